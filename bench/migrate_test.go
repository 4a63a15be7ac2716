package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/registryd/registryd/internal/testenv"
)

// migrateSet is the blob mix of the migration benchmark: 1 GiB in blobs of mixed sizes
// (1/8 of it with REGISTRYD_BENCH_SCALE=small).
func migrateSet() []int64 {
	var sizes []int64
	add := func(n int, size int64) {
		for range n {
			sizes = append(sizes, size)
		}
	}
	add(4, 128<<20)
	add(32, 8<<20)
	add(256, 1<<20)
	if os.Getenv("REGISTRYD_BENCH_SCALE") == "small" {
		for i := range sizes {
			sizes[i] /= 8
		}
	}
	return sizes
}

// TestBenchMigrate compares "registryd migrate" from one MinIO bucket to another with a
// direct object-by-object copy of the same objects with aws-sdk-go-v2 (GetObject
// streamed into the upload manager), 8 objects at a time both. Run:
// REGISTRYD_BENCH=1 go test ./bench -run TestBenchMigrate -v -timeout 30m
func TestBenchMigrate(t *testing.T) {
	if os.Getenv("REGISTRYD_BENCH") == "" {
		t.Skip("benchmark: set REGISTRYD_BENCH=1 (see bench/README.md)")
	}
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	c := s3.New(s3.Options{
		Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
	})
	s3cfg := func(bucket string) string {
		p := filepath.Join(t.TempDir(), "config.yml")
		body := fmt.Sprintf("version: 0.1\nlog: {level: warn}\nstorage:\n  s3:\n    bucket: %s\n    region: %s\n    regionendpoint: %s\n    forcepathstyle: true\n"+
			"    accesskey: %s\n    secretkey: %s\n    chunksize: %d\n", bucket, m.Region, m.Endpoint, m.AccessKey, m.SecretKey, partSize)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The source: blobs at their content addresses, each linked into one of 8
	// repositories, as a registry would hold them.
	src := m.NewBucket(t)
	sizes := migrateSet()
	var keys []string
	var total int64
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	//nolint:staticcheck // SA1019: the classic upload manager, as in the S3 benchmark's baseline
	up := manager.NewUploader(c, func(u *manager.Uploader) { u.PartSize, u.Concurrency = partSize, partConc })
	for i, size := range sizes {
		total += size
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			seed := uint64(1000 + i)
			dg := digestOf(seed, size)
			hex := strings.TrimPrefix(dg, "sha256:")
			key := "docker/registry/v2/blobs/sha256/" + hex[:2] + "/" + hex + "/data"
			link := fmt.Sprintf("docker/registry/v2/repositories/bench/r%d/_layers/sha256/%s/link", i%8, hex)
			//nolint:staticcheck // SA1019: as above
			if _, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: &src, Key: &key, Body: newStream(seed, size)}); err != nil {
				t.Error(err)
				return
			}
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &src, Key: &link, Body: strings.NewReader(dg)}); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			keys = append(keys, key)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	bin := testenv.RegistrydBinary(t)
	srcCfg := s3cfg(src)

	type rowResult struct{ secs, mibs, ratio []float64 }
	rows := []string{
		"aws-sdk-go-v2 direct: GetObject streamed into the upload manager",
		"registryd migrate --concurrency 8",
		"registryd migrate again (everything already there)",
	}
	res := make([]rowResult, len(rows))
	var peak int64
	rounds := benchRounds()
	for round := range rounds {
		// Direct copy of the blob objects.
		dst := m.NewBucket(t)
		settle()
		start := time.Now()
		if err := directCopy(ctx, c, src, dst, keys); err != nil {
			t.Fatal(err)
		}
		direct := float64(total) / (1 << 20) / time.Since(start).Seconds()

		// registryd migrate to a fresh bucket (the blobs, plus the 292 layer links).
		dstCfg := s3cfg(m.NewBucket(t))
		settle()
		d1, rss, err := runMigrate(ctx, bin, srcCfg, dstCfg)
		if err != nil {
			t.Fatal(err)
		}
		peak = max(peak, rss)
		d2, _, err := runMigrate(ctx, bin, srcCfg, dstCfg)
		if err != nil {
			t.Fatal(err)
		}
		mig := float64(total) / (1 << 20) / d1.Seconds()
		again := float64(total) / (1 << 20) / d2.Seconds()
		for i, v := range []float64{direct, mig, again} {
			res[i].secs = append(res[i].secs, float64(total)/(1<<20)/v)
			res[i].mibs = append(res[i].mibs, v)
			res[i].ratio = append(res[i].ratio, v/direct)
		}
		t.Logf("round %d: direct %.0f MiB/s, migrate %.0f MiB/s (%s), again %s, peak RSS %d MiB", round+1, direct, mig, d1.Round(time.Millisecond), d2.Round(time.Millisecond), rss>>20)
	}
	var table bytes.Buffer
	fmt.Fprintf(&table, "| %d blobs, %d MiB | seconds | MiB/s | throughput vs direct |\n|---|---|---|---|\n", len(sizes), total>>20)
	for i, name := range rows {
		if i == 2 {
			fmt.Fprintf(&table, "| %s | %.1f | – | – |\n", name, median(res[i].secs))
			continue
		}
		fmt.Fprintf(&table, "| %s | %.1f | %.0f | %.2f× |\n", name, median(res[i].secs), median(res[i].mibs), median(res[i].ratio))
	}
	fmt.Fprintf(&table, "\nPeak RSS of the migrate process (VmHWM, highest over the rounds): %d MiB.\n", peak>>20)
	writeResults(t, "migrate.md", "Migration MinIO → MinIO: registryd migrate against a direct aws-sdk-go-v2 copy",
		"REGISTRYD_BENCH=1 go test ./bench -run TestBenchMigrate -v -timeout 30m", rounds,
		fmt.Sprintf("one MinIO, a source bucket and a fresh destination bucket per row and round; the blob mix is %s, "+
			"8 objects at a time both ways, 16 MiB parts with 4 in flight per object. The direct row copies only the blob "+
			"objects; migrate also walks the repositories, stats both sides, verifies every digest and writes the layer links. "+
			"The last row is the same migrate run again: the time of a resumed or final run that finds everything there.",
			describeSet(sizes)), table.String())
}

// describeSet names the blob mix: "4 × 128 MiB + ...".
func describeSet(sizes []int64) string {
	count := map[int64]int{}
	var order []int64
	for _, s := range sizes {
		if count[s] == 0 {
			order = append(order, s)
		}
		count[s]++
	}
	var parts []string
	for _, s := range order {
		unit := fmt.Sprintf("%d MiB", s>>20)
		if s < 1<<20 {
			unit = fmt.Sprintf("%d KiB", s>>10)
		}
		parts = append(parts, fmt.Sprintf("%d × %s", count[s], unit))
	}
	return strings.Join(parts, " + ")
}

// directCopy copies keys from bucket src to dst, 8 objects at a time, each streamed from
// GetObject into the upload manager.
func directCopy(ctx context.Context, c *s3.Client, src, dst string, keys []string) error {
	//nolint:staticcheck // SA1019: the classic upload manager is the direct copy's baseline
	up := manager.NewUploader(c, func(u *manager.Uploader) {
		u.PartSize, u.Concurrency = partSize, partConc
		u.ClientOptions = append(u.ClientOptions, unsignedPayload)
	})
	errs := make(chan error, len(keys))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, key := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &src, Key: &key})
			if err != nil {
				errs <- err
				return
			}
			defer out.Body.Close()
			//nolint:staticcheck // SA1019: as above
			if _, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: &dst, Key: &key, Body: out.Body}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// runMigrate runs the registryd binary's migrate and returns its duration and peak RSS.
func runMigrate(ctx context.Context, bin, from, to string) (time.Duration, int64, error) {
	cmd := exec.CommandContext(ctx, bin, "migrate", "--from", from, "--to", to, "--concurrency", "8", "--progress-interval", "0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	// The process's own high-water mark (VmHWM), read until it exits: the rusage of a
	// child started by os/exec also counts the parent's pages at the time of the fork.
	var rss int64
	done := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			rss = max(rss, vmHWM(cmd.Process.Pid))
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	err := cmd.Wait()
	took := time.Since(start)
	close(done)
	<-polled
	if err != nil {
		return 0, 0, fmt.Errorf("migrate: %w\n%s", err, out.String())
	}
	return took, rss, nil
}

// vmHWM returns the peak resident set of process pid in bytes (0 once it has exited).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

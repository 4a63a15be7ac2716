package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/registryd/registryd/internal/testenv"
)

const (
	partSize = 16 << 20
	partConc = 4
)

// target is something that stores blobs: registryd, Distribution, or S3 directly.
type target interface {
	name() string
	push(ctx context.Context, key string, seed uint64, size int64, dgst string) error
	pull(ctx context.Context, key string, dgst string, size int64) error
	pid() int // 0 when there is no server process
}

// direct transfers with aws-sdk-go-v2's upload manager. With unsigned set its parts go out
// as registryd's do: a CRC32 checksum header and an unsigned SigV4 payload; otherwise with
// the SDK's defaults, which over plain HTTP sign (SHA-256) every payload.
type direct struct {
	c        *s3.Client
	bucket   string
	unsigned bool
}

func (d *direct) name() string {
	if d.unsigned {
		return "aws-sdk-go-v2 direct, unsigned payload"
	}
	return "aws-sdk-go-v2 direct"
}
func (d *direct) pid() int { return 0 }

func (d *direct) push(ctx context.Context, key string, seed uint64, size int64, _ string) error {
	//nolint:staticcheck // SA1019: the classic upload manager is the baseline every committed table measured
	up := manager.NewUploader(d.c, func(u *manager.Uploader) {
		u.PartSize, u.Concurrency = partSize, partConc
		if d.unsigned {
			u.ClientOptions = append(u.ClientOptions, unsignedPayload)
		}
	})
	//nolint:staticcheck // SA1019: as above
	_, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: &d.bucket, Key: &key, Body: newStream(seed, size)})
	return err
}

func (d *direct) pull(ctx context.Context, key, _ string, size int64) error {
	out, err := d.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &d.bucket, Key: &key})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	n, err := io.CopyBuffer(io.Discard, out.Body, make([]byte, 256<<10))
	if err == nil && n != size {
		err = fmt.Errorf("got %d bytes, want %d", n, size)
	}
	return err
}

// unsignedPayload is a per-call option that sends the payload unsigned (UNSIGNED-PAYLOAD),
// as driver/s3 does for requests that carry a CRC32 checksum.
func unsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("bench.UnsignedPayload",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (
				middleware.InitializeOutput, middleware.Metadata, error,
			) {
				return next.HandleInitialize(v4.SetPayloadHash(ctx, "UNSIGNED-PAYLOAD"), in)
			}), middleware.After)
	})
}

// registry pushes with POST + one streamed PATCH + PUT (docker, podman, skopeo, crane)
// or, when mono is set, with POST + one PUT carrying the body (oras, helm), and pulls with
// GET.
type registry struct {
	label string
	url   string
	proc  *testenv.Process
	mono  bool
}

func (r *registry) name() string { return r.label }
func (r *registry) pid() int     { return r.proc.Cmd.Process.Pid }

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}

func (r *registry) push(ctx context.Context, key string, seed uint64, size int64, dgst string) error {
	loc, err := r.startUpload(ctx, "bench/"+key)
	if err != nil {
		return err
	}
	if r.mono {
		return r.put(ctx, loc, newStream(seed, size), size, dgst)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc, newStream(seed, size))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		return fmt.Errorf("PATCH: %d", resp.StatusCode)
	}
	loc = resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = r.url + loc
	}
	return r.put(ctx, loc, nil, 0, dgst)
}

// startUpload starts an upload in repo (POST) and returns its absolute Location.
func (r *registry) startUpload(ctx context.Context, repo string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.url+"/v2/"+repo+"/blobs/uploads/", nil)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST: %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = r.url + loc
	}
	return loc, nil
}

// put completes the upload at loc with an optional body of size bytes.
func (r *registry) put(ctx context.Context, loc string, body io.Reader, size int64, dgst string) error {
	sep := "&"
	if !strings.Contains(loc, "?") {
		sep = "?"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, loc+sep+"digest="+dgst, body)
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		return fmt.Errorf("PUT: %d %s", resp.StatusCode, b)
	}
	return nil
}

func (r *registry) pull(ctx context.Context, key, dgst string, size int64) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/v2/bench/"+key+"/blobs/"+dgst, nil)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET: %d", resp.StatusCode)
	}
	n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 256<<10))
	if err == nil && n != size {
		err = fmt.Errorf("got %d bytes, want %d", n, size)
	}
	return err
}

// peakRSS returns the process's peak resident set (VmHWM) in MiB and resets the peak.
func peakRSS(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	var kb float64
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	return kb / 1024
}

type result struct {
	secs float64
	mibs float64
	rss  float64
}

// run runs n concurrent transfers of size bytes through t and reports aggregate MiB/s and
// the server's peak RSS during the run.
func run(ctx context.Context, tg target, op string, keyPrefix string, n int, size int64, seeds []uint64, dgsts []string) (result, error) {
	peakRSS(tg.pid())
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("%s%d", keyPrefix, i)
			if op == "push" {
				errs[i] = tg.push(ctx, key, seeds[i], size, dgsts[i])
			} else {
				errs[i] = tg.pull(ctx, key, dgsts[i], size)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	if err := errors.Join(errs...); err != nil {
		return result{}, fmt.Errorf("%s %s: %w", tg.name(), op, err)
	}
	return result{secs: el, mibs: float64(int64(n)*size) / (1 << 20) / el, rss: peakRSS(tg.pid())}, nil
}

// row is one target of a benchmark table and what it measures.
type row struct {
	tg         target
	key        string // key prefix suffix: the rows of one registry push different blobs
	push, pull bool
	ref        int // index of the row its ratios are against (an earlier row, or itself)
}

// settle lets the machine catch up between measurements: dirty pages of the previous
// transfer are written back, so they do not slow the next one down.
func settle() {
	syscall.Sync()
	time.Sleep(time.Second)
}

// median returns the median of v (the mean of the middle two for an even count).
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// scenario is a number of concurrent clients each transferring one blob of a size.
type scenario struct {
	name    string
	clients int
	size    int64
}

// benchRounds is the number of rounds of each scenario (REGISTRYD_BENCH_ROUNDS, default 3).
func benchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("REGISTRYD_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// benchTable runs every scenario for rounds rounds, each round on the rows newRows starts
// (fresh server processes), and returns the markdown table: median throughputs, the
// median of each round's ratio to the row's reference row (refName) in that round, and
// the highest peak RSS.
func benchTable(t *testing.T, scenarios []scenario, rounds int, refName string, newRows func(t *testing.T) []row) string {
	ctx := context.Background()
	var table bytes.Buffer
	fmt.Fprintf(&table, "| scenario | target | push MiB/s | push vs %s | pull MiB/s | pull vs %s | server peak RSS push / pull (MiB) |\n|---|---|---|---|---|---|---|\n", refName, refName)
	for si, sc := range scenarios {
		// Every round and row suffix pushes its own blobs, so no push finds its blob
		// already stored.
		blobsFor := func(round int, suffix string) ([]uint64, []string) {
			h := fnv.New32a()
			h.Write([]byte(suffix))
			seeds, dgsts := make([]uint64, sc.clients), make([]string, sc.clients)
			for i := range seeds {
				seeds[i] = uint64(si)<<56 | uint64(round)<<48 | uint64(h.Sum32()&0xffff)<<32 | uint64(i+1)
				dgsts[i] = digestOf(seeds[i], sc.size)
			}
			return seeds, dgsts
		}
		// Rounds run every row in turn against fresh server processes; the table reports
		// medians, each ratio the median of the per-round ratios to that round's direct
		// transfer (measured minutes apart at most), and the highest peak RSS.
		var names []string
		var rowsOf []row
		samples := map[string]*[4][]float64{} // push, pull, push ratio, pull ratio
		peak := map[string]*[2]float64{}
		for round := range rounds {
			rows := newRows(t)
			results := make([][2]float64, len(rows))
			for ri, rw := range rows {
				name := rw.tg.name()
				if round == 0 {
					names, rowsOf = append(names, name), append(rowsOf, rw)
					samples[name], peak[name] = &[4][]float64{}, &[2]float64{}
				}
				key := fmt.Sprintf("r%ds%d%s-", round, si, rw.key)
				seeds, dgsts := blobsFor(round, rw.key)
				var pu, pl result
				var err error
				if rw.push {
					settle()
					if pu, err = run(ctx, rw.tg, "push", key, sc.clients, sc.size, seeds, dgsts); err != nil {
						t.Fatal(err)
					}
				}
				if rw.pull {
					settle()
					if pl, err = run(ctx, rw.tg, "pull", key, sc.clients, sc.size, seeds, dgsts); err != nil {
						t.Fatal(err)
					}
				}
				results[ri] = [2]float64{pu.mibs, pl.mibs}
				base := results[rw.ref]
				sm, pk := samples[name], peak[name]
				if rw.push {
					sm[0], sm[2] = append(sm[0], pu.mibs), append(sm[2], pu.mibs/base[0])
					pk[0] = max(pk[0], pu.rss)
				}
				if rw.pull {
					sm[1], sm[3] = append(sm[1], pl.mibs), append(sm[3], pl.mibs/base[1])
					pk[1] = max(pk[1], pl.rss)
				}
				t.Logf("round %d, %s %s: push %.0f MiB/s (rss %.0f), pull %.0f MiB/s (rss %.0f)", round+1, sc.name, name, pu.mibs, pu.rss, pl.mibs, pl.rss)
			}
			for _, rw := range rows {
				if rw.tg.pid() != 0 {
					rw.tg.(*registry).proc.Stop()
				}
			}
		}
		for i, name := range names {
			rw, sm, pk := rowsOf[i], samples[name], peak[name]
			cell := func(ok bool, v, ratio []float64) (string, string) {
				if !ok {
					return "–", "–"
				}
				return fmt.Sprintf("%.0f", median(v)), fmt.Sprintf("%.2f×", median(ratio))
			}
			pushMiBs, pushRatio := cell(rw.push, sm[0], sm[2])
			pullMiBs, pullRatio := cell(rw.pull, sm[1], sm[3])
			rss := "–"
			if rw.tg.pid() != 0 {
				rss = "– / –"
				if rw.push {
					rss = fmt.Sprintf("%.0f / –", pk[0])
				}
				if rw.pull {
					rss = rss[:strings.LastIndex(rss, "/")+2] + fmt.Sprintf("%.0f", pk[1])
				}
			}
			fmt.Fprintf(&table, "| %s | %s | %s | %s | %s | %s | %s |\n", sc.name, name, pushMiBs, pushRatio, pullMiBs, pullRatio, rss)
		}
	}
	return table.String()
}

// TestBenchS3 compares registryd and CNCF Distribution, both on the same MinIO, with direct
// aws-sdk-go-v2 transfers. Run: REGISTRYD_BENCH=1 go test ./bench -run TestBenchS3 -v -timeout 60m
func TestBenchS3(t *testing.T) {
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
		return fmt.Sprintf("  s3:\n    bucket: %s\n    region: %s\n    regionendpoint: %s\n    forcepathstyle: true\n"+
			"    accesskey: %s\n    secretkey: %s\n    chunksize: %d\n", bucket, m.Region, m.Endpoint, m.AccessKey, m.SecretKey, partSize)
	}
	directBucket := m.NewBucket(t)
	// Fresh server processes per scenario: peak RSS is per process (Go keeps freed heap
	// for a while, so a reset between phases would not isolate them).
	newRows := func(t *testing.T) []row {
		bucket := m.NewBucket(t)
		cfg := "version: 0.1\nlog: {level: warn}\nhttp: {secret: bench-secret-0123456789}\nstorage:\n" + s3cfg(bucket) + "  redirect: {disable: true}\n"
		reg := testenv.StartRegistryd(t, cfg)
		other := testenv.StartRegistryd(t, cfg)
		redirecting := testenv.StartRegistryd(t, strings.Replace(cfg, "redirect: {disable: true}", "redirect: {enable: true}", 1))
		rows := []row{
			{tg: &direct{c: c, bucket: directBucket}, push: true, pull: true},
			{tg: &direct{c: c, bucket: directBucket, unsigned: true}, key: "u", push: true},
			{tg: &registry{label: "registryd, POST+PATCH+PUT", url: reg.URL, proc: reg.Process}, push: true, pull: true},
			{tg: &registry{label: "registryd, pull from a replica that did not write the blob", url: other.URL, proc: other.Process}, pull: true},
			{tg: &registry{label: "registryd, POST+PUT with body", url: reg.URL, proc: reg.Process, mono: true}, key: "m", push: true},
			{tg: &registry{label: "registryd, pull redirected to a pre-signed URL (storage.redirect.enable)", url: redirecting.URL, proc: redirecting.Process}, pull: true},
		}
		if os.Getenv("REGISTRYD_BENCH_NO_DISTRIBUTION") == "" {
			dist := startDistribution(t, s3cfg(m.NewBucket(t)))
			rows = append(rows, row{tg: dist, push: true, pull: true})
			mono := *dist.(*registry)
			mono.label, mono.mono = mono.label+", POST+PUT with body", true
			rows = append(rows, row{tg: &mono, key: "m", push: true})
		}
		return rows
	}
	scenarios := []scenario{{"1 client × 1 GiB", 1, 1 << 30}, {"16 clients × 32 MiB", 16, 32 << 20}}
	if s := os.Getenv("REGISTRYD_BENCH_SCALE"); s == "small" {
		scenarios = []scenario{{"1 client × 128 MiB", 1, 128 << 20}, {"16 clients × 8 MiB", 16, 8 << 20}}
	}
	rounds := benchRounds()
	table := benchTable(t, scenarios, rounds, "direct", newRows)
	// Memory does not grow with blob size: registryd's peak RSS pushing 256 MiB vs 2 GiB.
	var mem bytes.Buffer
	fmt.Fprintf(&mem, "| blob size | registryd peak RSS during push (MiB) |\n|---|---|\n")
	for _, size := range []int64{256 << 20, 2 << 30} {
		if os.Getenv("REGISTRYD_BENCH_SCALE") == "small" {
			size /= 8
		}
		seed := uint64(size)
		d := digestOf(seed, size)
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			reg := testenv.StartRegistryd(t, "version: 0.1\nlog: {level: warn}\nhttp: {secret: bench-secret-0123456789}\nstorage:\n"+
				s3cfg(m.NewBucket(t))+"  redirect: {disable: true}\n")
			r, err := run(ctx, &registry{label: "registryd", url: reg.URL, proc: reg.Process}, "push", "mem-", 1, size, []uint64{seed}, []string{d})
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&mem, "| %d MiB | %.0f |\n", size>>20, r.rss)
		})
	}
	writeResults(t, "s3.md", "S3 (MinIO on loopback): registryd and CNCF Distribution v3.1.2 against direct aws-sdk-go-v2",
		"REGISTRYD_BENCH=1 go test ./bench -run TestBenchS3 -v -timeout 60m", rounds,
		"all on the same MinIO, ratios against the direct SDK transfer of the same bytes (part size 16 MiB, 4 parts in flight).", table+"\n"+mem.String())
}

func writeResults(t *testing.T, file, title, command string, rounds int, about, body string) {
	dir := filepath.Join("results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	text := fmt.Sprintf("# %s\n\nCommand: `%s`\n\nMeasured %s on %s (2 cores), %d rounds, each running every target in turn; %s "+
		"Throughputs are medians over the rounds, ratios the medians of each round's ratio, peak RSS the highest seen.\n\n%s",
		title, command, time.Now().UTC().Format("2006-01-02 15:04 MST"), host, rounds, about, body)
	if os.Getenv("REGISTRYD_BENCH_SCALE") == "small" {
		file = "small-" + file
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text)
}

// startDistribution starts CNCF Distribution on the given storage section, redirects off.
func startDistribution(t *testing.T, storage string) target {
	port := testenv.FreePort(t)
	addr := testenv.Addr(port)
	cfg := filepath.Join(t.TempDir(), "config.yml")
	body := "version: 0.1\nlog: {level: error}\nstorage:\n" + storage + "  redirect: {disable: true}\nhttp:\n  addr: " + addr + "\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, testenv.Spec{Name: "distribution", Path: testenv.Tool(t, "registry"), Args: []string{"serve", cfg},
		Addr: addr, Ready: testenv.HTTPReady("http://" + addr + "/v2/")})
	return &registry{label: "CNCF Distribution v3.1.2", url: "http://" + addr, proc: p}
}

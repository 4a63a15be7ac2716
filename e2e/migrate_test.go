package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/registryd/registryd/internal/testenv"
	"github.com/registryd/registryd/storage"
)

// migrateBin runs "registryd migrate --from from --to to --json args..." and returns its
// report, exit status and stderr.
func migrateBin(t *testing.T, ctx context.Context, from, to string, args ...string) (storage.MigrateReport, int, string) {
	t.Helper()
	cmd := migrateCmd(t, ctx, from, to, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		}
	}
	var rep storage.MigrateReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("migrate report: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	return rep, code, stderr.String()
}

func migrateCmd(t *testing.T, ctx context.Context, from, to string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, testenv.RegistrydBinary(t), append([]string{"migrate", "--from", from, "--to", to, "--json"}, args...)...)
	// A minimal environment: the machine's AWS_CA_BUNDLE and REGISTRY_* must not leak in.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	return cmd
}

// mustMigrate runs a migration that must succeed with no failure.
func mustMigrate(t *testing.T, ctx context.Context, what, from, to string, args ...string) storage.MigrateReport {
	t.Helper()
	start := time.Now()
	rep, code, stderr := migrateBin(t, ctx, from, to, args...)
	if code != 0 || rep.Failed != 0 {
		t.Fatalf("%s: exit %d, failures %+v\nstderr: %s", what, code, rep.Failures, stderr)
	}
	t.Logf("%s: %d blobs copied (%d bytes), %d skipped, %d manifests, %d tags, %d referrers in %s",
		what, rep.BlobsCopied, rep.BytesCopied, rep.BlobsSkipped, rep.Manifests, rep.Tags, rep.Referrers, time.Since(start).Round(time.Millisecond))
	return rep
}

// configFile writes a registryd configuration for a storage section and returns its path.
func configFile(t *testing.T, storageYAML string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(p, []byte(registryConfig(storageYAML, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fsTree maps every object file under root's layout to its bytes, leaving out what is
// transient or private to one server: uploads in flight, readiness probes, garbage
// collection's lease, plan and push markers (_gc, not migrated), and writer sessions and
// temporary files (names with "~").
func fsTree(t *testing.T, root string) map[string]string {
	t.Helper()
	base := filepath.Join(root, "docker", "registry", "v2")
	out := map[string]string{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if p == base && os.IsNotExist(err) {
			return fs.SkipDir
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "_uploads" || d.Name() == "_health" || d.Name() == "_gc" {
				return fs.SkipDir
			}
			return nil
		}
		if strings.Contains(d.Name(), "~") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tagMany tags the manifest at repo@d n times (tag-0000, ...) with manifest PUTs by tag,
// 16 at a time.
func tagMany(t *testing.T, ctx context.Context, host, repo string, d v1.Hash, n int) []string {
	t.Helper()
	get, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/"+repo+"/manifests/"+d.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	get.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	mt := resp.Header.Get("Content-Type")
	tags := make([]string, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		tags[i] = fmt.Sprintf("tag-%04d", i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+host+"/v2/"+repo+"/manifests/"+tags[i], bytes.NewReader(body))
			req.Header.Set("Content-Type", mt)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				errs <- fmt.Errorf("PUT %s: %s", tags[i], resp.Status)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return tags
}

// TestMigrateAcrossBackends carries a registry with several repositories, shared layers,
// a multi-arch index, a referrer and 1,000 tags from the filesystem to MinIO, then
// fake-gcs-server, then Azurite, then another filesystem tree, with the registryd
// binary's migrate. The last tree holds every object of the first with equal bytes (a
// dry run before the last hop writes nothing), and a registryd serving it is pulled with
// a real client.
func TestMigrateAcrossBackends(t *testing.T) {
	testenv.SkipIfShort(t, "emulators and the registryd binary")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	first := t.TempDir()
	src := testenv.StartRegistryd(t, registryConfig("  filesystem:\n    rootdirectory: "+first+"\n", ""))
	base, err := random.Image(256<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := random.Layer(300<<10, "application/vnd.docker.image.rootfs.diff.tar.gzip")
	if err != nil {
		t.Fatal(err)
	}
	derived, err := mutate.AppendLayers(base, extra) // shares base's layers
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(128<<10, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	big := randomOCIImage(t, 6<<20) // streamed through a Writer (multipart) on each hop
	entries := []compatEntry{
		{repo: "apps/web", tag: "v1", img: base},
		{repo: "apps/api", tag: "v1", img: derived},
		{repo: "apps/api", tag: "big", img: big},
		{repo: "tools/multi", tag: "latest", idx: idx},
	}
	pushCompat(t, ctx, src.Host, entries)
	baseDigest, _ := base.Digest()
	sig := mutate.Subject(randomOCIImage(t, 1<<10), v1.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: baseDigest, Size: 1}).(v1.Image)
	if err := remote.Write(compatRef(t, src.Host, "apps/web", "sig"), sig, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	entries = append(entries, compatEntry{repo: "apps/web", tag: "sig", img: sig})
	bulk := tagMany(t, ctx, src.Host, "apps/web", baseDigest, 1000)
	src.Stop()
	const tags = 1005

	last := t.TempDir()
	hops := []struct{ name, storage string }{
		{"filesystem", "  filesystem:\n    rootdirectory: " + first + "\n"},
		{"s3", s3Backend(t)},
		{"gcs", gcsBackend(t)},
		{"azure", azureBackend(t)},
		{"filesystem", "  filesystem:\n    rootdirectory: " + last + "\n"},
	}
	var blobs int64
	for i := 1; i < len(hops); i++ {
		from, to := configFile(t, hops[i-1].storage), configFile(t, hops[i].storage)
		what := hops[i-1].name + " → " + hops[i].name
		if i == 1 {
			dry := mustMigrate(t, ctx, what+" (dry run)", from, to, "--dry-run")
			if !dry.DryRun || dry.Tags != tags || dry.BlobsCopied == 0 {
				t.Fatalf("dry run: report %+v", dry.MigrateStats)
			}
		}
		rep := mustMigrate(t, ctx, what, from, to, "--concurrency", "8")
		if i == 1 {
			blobs = rep.BlobsCopied
			// The dry run wrote nothing: this run found nothing at the destination.
		}
		if rep.Repositories != 3 || rep.Tags != tags || rep.BlobsCopied != blobs || rep.Referrers != 1 || rep.BlobsSkipped != 0 {
			t.Fatalf("%s: report %+v, want 3 repositories, %d tags, %d blobs, 1 referrer", what, rep.MigrateStats, tags, blobs)
		}
	}
	want, got := fsTree(t, first), fsTree(t, last)
	if len(want) < tags {
		t.Fatalf("the first tree holds only %d objects", len(want))
	}
	for p, b := range want {
		if g, ok := got[p]; !ok {
			t.Errorf("missing after four hops: %s", p)
		} else if g != b {
			t.Errorf("differs after four hops: %s", p)
		}
	}
	t.Logf("%d objects equal after filesystem → MinIO → fake-gcs-server → Azurite → filesystem", len(want))

	dst := testenv.StartRegistryd(t, registryConfig("  filesystem:\n    rootdirectory: "+last+"\n", ""))
	verifyMigrated(t, ctx, dst.Host, entries, "apps/web", bulk, baseDigest)
}

// verifyMigrated pulls every entry from host with go-containerregistry (index children
// by digest), checks that each bulk tag of bulkRepo resolves to bulkDigest (HEAD) and
// that the tags lists and the catalog hold exactly what was pushed.
func verifyMigrated(t *testing.T, ctx context.Context, host string, entries []compatEntry, bulkRepo string, bulk []string, bulkDigest v1.Hash) {
	t.Helper()
	for _, e := range entries {
		r := compatRef(t, host, e.repo, e.tag)
		if e.img != nil {
			got, err := remote.Image(r, remote.WithContext(ctx))
			if err != nil {
				t.Fatalf("pull %s: %v", r, err)
			}
			assertSameImage(t, r.String(), got, e.img)
			continue
		}
		got, err := remote.Index(r, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("pull index %s: %v", r, err)
		}
		im, err := e.idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range im.Manifests {
			want, _ := e.idx.Image(d.Digest)
			child, err := got.Image(d.Digest)
			if err != nil {
				t.Fatalf("%s child %s: %v", r, d.Digest, err)
			}
			assertSameImage(t, r.String()+"@"+d.Digest.String(), child, want)
		}
	}
	errs := make(chan error, len(bulk))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, tag := range bulk {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d, err := remote.Head(compatRef(t, host, bulkRepo, tag), remote.WithContext(ctx))
			if err == nil && d.Digest != bulkDigest {
				err = fmt.Errorf("%s:%s is %s, want %s", bulkRepo, tag, d.Digest, bulkDigest)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wantTags := map[string][]string{bulkRepo: bulk}
	for _, e := range entries {
		wantTags[e.repo] = append(wantTags[e.repo], e.tag)
	}
	var repos []string
	for repo, tags := range wantTags {
		repos = append(repos, repo)
		got, err := remote.List(compatRef(t, host, repo, "x").Context(), remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("tags of %s: %v", repo, err)
		}
		slices.Sort(got)
		slices.Sort(tags)
		if !slices.Equal(got, tags) {
			t.Fatalf("tags of %s: %d tags, want %d", repo, len(got), len(tags))
		}
	}
	catalog, err := remote.Catalog(ctx, compatRef(t, host, bulkRepo, "x").Context().Registry, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(catalog)
	slices.Sort(repos)
	if !slices.Equal(catalog, repos) {
		t.Fatalf("catalog %v, want %v", catalog, repos)
	}
}

// blobsLine matches the blob counts of a plain progress line.
var blobsLine = regexp.MustCompile(`(\d+)/(\d+) blobs`)

// TestMigrateKillResumeAndLivePushes: a migration (filesystem → MinIO) killed with SIGKILL
// half-way is resumed by the next run, which copies exactly what a dry run says is
// missing and skips exactly what the killed run finished; a run while the source takes
// new pushes leaves no tag pointing at missing content, and the next run picks the new
// images up; then nothing is left to copy. Distribution's own tree goes the same way.
func TestMigrateKillResumeAndLivePushes(t *testing.T) {
	testenv.SkipIfShort(t, "emulators and the registryd binary")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	root := t.TempDir()
	src := testenv.StartRegistryd(t, registryConfig("  filesystem:\n    rootdirectory: "+root+"\n", ""))
	var entries []compatEntry
	for i := range 6 {
		img, err := random.Image(4<<20, 4)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, compatEntry{repo: fmt.Sprintf("big/r%d", i), tag: "v1", img: img})
	}
	pushCompat(t, ctx, src.Host, entries)
	from := configFile(t, "  filesystem:\n    rootdirectory: "+root+"\n")
	minio := testenv.StartMinIO(t)
	bucket := minio.NewBucket(t)
	to := configFile(t, s3Storage(minio, bucket, minio.AccessKey, minio.SecretKey, minio.Endpoint))

	// Run 1: one blob at a time, killed once a few blobs are done.
	cmd := migrateCmd(t, ctx, from, to, "--concurrency", "1", "--progress-interval", "20ms")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		m := blobsLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		done, _ := strconv.Atoi(m[1])
		total, _ := strconv.Atoi(m[2])
		if done >= 3 && done < total {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	_ = cmd.Wait()
	if !killed {
		t.Fatal("the first run finished before it could be killed")
	}

	dry := mustMigrate(t, ctx, "dry run after the kill", from, to, "--dry-run")
	if dry.BlobsSkipped < 3 || dry.BlobsCopied == 0 || dry.Tags != int64(len(entries)) {
		t.Fatalf("after the kill: %+v, want ≥3 blobs there, some missing, no tag written", dry.MigrateStats)
	}
	rep := mustMigrate(t, ctx, "resumed run", from, to)
	if rep.BlobsCopied != dry.BlobsCopied || rep.BlobsSkipped != dry.BlobsSkipped || rep.BytesCopied != dry.BytesCopied {
		t.Fatalf("resumed run copied %d blobs (%d bytes) and skipped %d; the dry run said %d (%d bytes) and %d",
			rep.BlobsCopied, rep.BytesCopied, rep.BlobsSkipped, dry.BlobsCopied, dry.BytesCopied, dry.BlobsSkipped)
	}

	// Run while the source takes pushes: whatever it copies is consistent.
	late := []compatEntry{}
	for i := range 3 {
		img, err := random.Image(512<<10, 2)
		if err != nil {
			t.Fatal(err)
		}
		late = append(late, compatEntry{repo: fmt.Sprintf("late/r%d", i), tag: "v1", img: img})
	}
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		for _, e := range late {
			pushCompat(t, ctx, src.Host, []compatEntry{e})
			time.Sleep(50 * time.Millisecond)
		}
	}()
	// Runs back to back while the pushes go on: none may fail (content pushed during a
	// run is copied, or deferred to the next run, never left half-visible).
	for runs := 1; ; runs++ {
		rep := mustMigrate(t, ctx, fmt.Sprintf("run %d during pushes", runs), from, to)
		if rep.Deferred > 0 {
			t.Logf("run %d deferred %d objects pushed while it ran", runs, rep.Deferred)
		}
		select {
		case <-pushed:
		default:
			continue
		}
		break
	}
	rep = mustMigrate(t, ctx, "run after the pushes", from, to)
	if rep.Tags+rep.TagsSkipped != int64(len(entries)+len(late)) {
		t.Errorf("after the pushes: %d tags written, %d there", rep.Tags, rep.TagsSkipped)
	}
	rep = mustMigrate(t, ctx, "final run", from, to)
	if rep.BlobsCopied != 0 || rep.Tags != 0 || rep.Manifests != 0 || rep.Links != 0 {
		t.Errorf("final run still copied: %+v", rep.MigrateStats)
	}
	dst := testenv.StartRegistryd(t, registryConfig(s3Storage(minio, bucket, minio.AccessKey, minio.SecretKey, minio.Endpoint), ""))
	verifyCompat(t, ctx, "registryd serving MinIO after resumed runs", dst.Host, append(entries, late...))
}

// TestMigrateFromDistribution: a filesystem tree written by CNCF Distribution is
// migrated to MinIO and served from there by registryd.
func TestMigrateFromDistribution(t *testing.T) {
	testenv.SkipIfShort(t, "Distribution, MinIO and the registryd binary")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := t.TempDir()
	dist := testenv.StartDistribution(t, root)
	objs := newCompatObjects(t)
	entries := append(objs.shared("dist"), uniqueEntries(t, "only")...)
	pushCompat(t, ctx, dist.Host, entries)
	dist.Stop()

	minio := testenv.StartMinIO(t)
	s3 := s3Storage(minio, minio.NewBucket(t), minio.AccessKey, minio.SecretKey, minio.Endpoint)
	rep := mustMigrate(t, ctx, "Distribution's tree → MinIO", configFile(t, "  filesystem:\n    rootdirectory: "+root+"\n"), configFile(t, s3))
	if rep.Tags != int64(len(entries)) || rep.BlobsCopied == 0 {
		t.Errorf("report %+v, want %d tags", rep.MigrateStats, len(entries))
	}
	reg := testenv.StartRegistryd(t, registryConfig(s3, ""))
	verifyCompat(t, ctx, "registryd serving what Distribution wrote, migrated to MinIO", reg.Host, entries)
}

package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/s3"
	"github.com/registryd/registryd/driver/testsuite"
	"github.com/registryd/registryd/internal/testenv"
)

const partSize = 5 << 20

// isolate keeps the environment's AWS settings (a CA bundle, credentials, profiles) out
// of the SDK under test: the tests configure everything explicitly.
func isolate(t *testing.T) {
	for _, k := range []string{"AWS_CA_BUNDLE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
		"AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// testConfig is where a test driver's client connects, its bucket and its options.
type testConfig struct {
	Bucket, Region, RegionEndpoint, AccessKey, SecretKey string
	s3.Options
}

// minioConfig is a testConfig for bucket on m with a 5 MiB part size.
func minioConfig(m *testenv.MinIO, bucket string) testConfig {
	cfg := testConfig{Bucket: bucket, Region: m.Region, RegionEndpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey}
	cfg.ChunkSize = partSize
	return cfg
}

// newDriver returns a driver on cfg; retry, when given, is its retry policy.
func newDriver(t *testing.T, cfg testConfig, retry ...driver.RetryPolicy) *s3.Driver {
	t.Helper()
	if len(retry) > 0 {
		cfg.Retry = retry[0]
	}
	d, err := s3.New(s3.NewTestClient(cfg.Region, cfg.RegionEndpoint, cfg.AccessKey, cfg.SecretKey), cfg.Bucket, cfg.Options)
	if err != nil {
		t.Fatalf("s3.New: %v", err)
	}
	return d
}

// fastFail bounds retries so failure cases end quickly.
var fastFail = driver.RetryPolicy{MaxAttempts: 2, BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond}

func TestS3(t *testing.T) {
	isolate(t)
	m := testenv.StartMinIO(t)

	t.Run("Suite", func(t *testing.T) {
		d := newDriver(t, minioConfig(m, m.NewBucket(t)))
		testsuite.Run(t, testsuite.Harness{Driver: d, PartSize: partSize})
	})
	t.Run("Misconfigured", func(t *testing.T) { testMisconfigured(t, m) })
	t.Run("ListDirectoryAcrossPages", func(t *testing.T) { testListDirAcrossPages(t, m) })
	t.Run("MultipartCopy", func(t *testing.T) { testMultipartCopy(t, m) })
	t.Run("RootDirectoryAndOptions", func(t *testing.T) { testRootDirectory(t, m) })
	t.Run("MemoryBudget", func(t *testing.T) { testMemoryBudget(t, m) })
	t.Run("SidecarHidden", func(t *testing.T) { testSidecarHidden(t, m) })
	t.Run("PayloadIntegrity", func(t *testing.T) { testPayloadIntegrity(t, m) })
	t.Run("PurgeSessions", func(t *testing.T) { testPurgeSessions(t, m) })
}

// testMisconfigured: wrong credentials, a missing bucket and an unreachable endpoint are
// each reported as their class by every operation, and never as ErrNotFound.
func testMisconfigured(t *testing.T, m *testenv.MinIO) {
	ctx := context.Background()
	good := minioConfig(m, m.NewBucket(t))
	gd := newDriver(t, good)
	// A session acknowledged on the real bucket, for the resume case.
	w, err := gd.Writer(ctx, "sess/data", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("acknowledged")); err != nil {
		t.Fatal(err)
	}
	state, err := w.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := gd.Put(ctx, "obj", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}

	wrongSecret, unknownKey, noBucket, unreachable := good, good, good, good
	wrongSecret.SecretKey = "not-the-secret"
	unknownKey.AccessKey = "nobody-knows-me"
	noBucket.Bucket = "no-such-bucket-registryd"
	unreachable.RegionEndpoint = "http://" + testenv.Addr(testenv.FreePort(t)) // closed port

	ops := []struct {
		name string
		fn   func(ctx context.Context, d driver.Driver) error
	}{
		{"Stat", func(ctx context.Context, d driver.Driver) error { _, err := d.Stat(ctx, "obj"); return err }},
		{"StatMissing", func(ctx context.Context, d driver.Driver) error { _, err := d.Stat(ctx, "missing"); return err }},
		{"Reader", func(ctx context.Context, d driver.Driver) error {
			r, err := d.Reader(ctx, "obj", 0, -1)
			if err == nil {
				_, err = io.ReadAll(r)
				r.Close()
			}
			return err
		}},
		{"ReaderMissing", func(ctx context.Context, d driver.Driver) error {
			_, err := d.Reader(ctx, "missing", 0, -1)
			return err
		}},
		{"Put", func(ctx context.Context, d driver.Driver) error {
			return d.Put(ctx, "new", bytes.NewReader([]byte("y")), 1)
		}},
		{"List", func(ctx context.Context, d driver.Driver) error { _, err := d.List(ctx, "", "", 0); return err }},
		{"Delete", func(ctx context.Context, d driver.Driver) error { return d.Delete(ctx, "missing") }},
		{"Copy", func(ctx context.Context, d driver.Driver) error { return d.Copy(ctx, "missing", "dst") }},
		{"WriterCommit", func(ctx context.Context, d driver.Driver) error {
			w, err := d.Writer(ctx, "w/data", nil)
			if err != nil {
				return err
			}
			if _, err := w.Write(bytes.Repeat([]byte("z"), partSize+1)); err != nil {
				_ = w.Abort(ctx)
				return err
			}
			return w.Commit(ctx)
		}},
		{"WriterResume", func(ctx context.Context, d driver.Driver) error {
			w, err := d.Writer(ctx, "sess/data", state)
			if err == nil {
				_ = w.Abort(ctx)
			}
			return err
		}},
	}
	cases := []struct {
		name string
		cfg  testConfig
		want error
	}{
		{"WrongSecret", wrongSecret, driver.ErrPermission},
		{"UnknownAccessKey", unknownKey, driver.ErrPermission},
		{"MissingBucket", noBucket, driver.ErrMisconfigured},
		{"Unreachable", unreachable, driver.ErrUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDriver(t, c.cfg, fastFail)
			for _, op := range ops {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				start := time.Now()
				err := op.fn(ctx, d)
				cancel()
				if !errors.Is(err, c.want) {
					t.Errorf("%s: want %v, got %v", op.name, c.want, err)
				}
				if errors.Is(err, driver.ErrNotFound) {
					t.Errorf("%s: reported ErrNotFound for %s: %v", op.name, c.name, err)
				}
				if el := time.Since(start); el > 5*time.Second {
					t.Errorf("%s: took %v", op.name, el)
				}
			}
		})
	}
	// The good driver still sees its session untouched.
	w, err = gd.Writer(ctx, "sess/data", state)
	if err != nil {
		t.Fatalf("resume after the failed attempts: %v", err)
	}
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
}

// testListDirAcrossPages: a directory "c" sorts before "c-0000" in path order but after
// "c-0999" in S3's key order ("c/" > "c-"); with more than one page of "c-" keys, List
// with a limit must still return the directory first.
func testListDirAcrossPages(t *testing.T, m *testenv.MinIO) {
	ctx := context.Background()
	d := newDriver(t, minioConfig(m, m.NewBucket(t)))
	const n = 1005
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var failed atomic.Int32
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := d.Put(ctx, fmt.Sprintf("l/c-%04d", i), bytes.NewReader(nil), 0); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d puts failed", failed.Load())
	}
	for _, p := range []string{"l/c/x", "l/b", "l/d"} {
		if err := d.Put(ctx, p, bytes.NewReader([]byte("x")), 1); err != nil {
			t.Fatal(err)
		}
	}
	got, err := d.List(ctx, "l", "", 3)
	if err != nil {
		t.Fatal(err)
	}
	if names := paths(got); names != "[l/b l/c/ l/c-0000]" {
		t.Errorf("List limit 3: got %s", names)
	}
	got, err = d.List(ctx, "l", "l/b", 2)
	if err != nil {
		t.Fatal(err)
	}
	if names := paths(got); names != "[l/c/ l/c-0000]" {
		t.Errorf("List after l/b limit 2: got %s", names)
	}
	got, err = d.List(ctx, "l", "l/c", 1)
	if err != nil {
		t.Fatal(err)
	}
	if names := paths(got); names != "[l/c-0000]" {
		t.Errorf("List after the directory l/c: got %s", names)
	}
	got, err = d.List(ctx, "l", "l/c-1004", 0)
	if err != nil {
		t.Fatal(err)
	}
	if names := paths(got); names != "[l/d]" {
		t.Errorf("List after the last c- key: got %s", names)
	}
	all, err := d.List(ctx, "l", "", 0)
	if err != nil || len(all) != n+3 {
		t.Errorf("List all: %d entries, %v", len(all), err)
	}
	if err := d.Delete(ctx, "l"); err != nil {
		t.Fatal(err)
	}
}

func paths(l []driver.Info) string {
	s := make([]string, len(l))
	for i, fi := range l {
		s[i] = fi.Path
		if fi.IsDir {
			s[i] += "/"
		}
	}
	return fmt.Sprint(s)
}

// testMultipartCopy copies above the threshold with UploadPartCopy.
func testMultipartCopy(t *testing.T, m *testenv.MinIO) {
	ctx := context.Background()
	cfg := minioConfig(m, m.NewBucket(t))
	cfg.CopyThreshold = 1
	cfg.CopyChunkSize = partSize
	d := newDriver(t, cfg)
	b := make([]byte, 2*partSize+12345)
	for i := range b {
		b[i] = byte(i * 7)
	}
	if err := d.Put(ctx, "src", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	if err := d.Copy(ctx, "src", "a/dst"); err != nil {
		t.Fatal(err)
	}
	r, err := d.Reader(ctx, "a/dst", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, b) {
		t.Errorf("multipart copy: %d bytes, %v", len(got), err)
	}
	if err := d.Copy(ctx, "missing", "a/dst2"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("copy of a missing source: %v", err)
	}
}

// testRootDirectory runs a write cycle under a root directory with checksums disabled
// and checks nothing leaks outside the root.
func testRootDirectory(t *testing.T, m *testenv.MinIO) {
	ctx := context.Background()
	bucket := m.NewBucket(t)
	cfg := minioConfig(m, bucket)
	cfg.RootDirectory = "/some/root/"
	cfg.DisableChecksums = true
	cfg.Concurrency = 1
	d := newDriver(t, cfg)
	w, err := d.Writer(ctx, "up/data", nil)
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Repeat([]byte("0123456789"), partSize/5)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	st, err := w.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w, err = d.Writer(ctx, "up/data", st); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("end")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	fi, err := d.Stat(ctx, "up/data")
	if err != nil || fi.Size != int64(len(b)+3) {
		t.Fatalf("stat: %+v %v", fi, err)
	}
	// Seen from the bucket root, everything is under some/root.
	top := newDriver(t, minioConfig(m, bucket))
	l, err := top.List(ctx, "", "", 0)
	if err != nil || paths(l) != "[some/]" {
		t.Errorf("bucket root holds %s, %v", paths(l), err)
	}
	l, err = top.List(ctx, "some/root/up", "", 0)
	if err != nil || paths(l) != "[some/root/up/data]" {
		t.Errorf("upload dir holds %s, %v", paths(l), err)
	}
	u, err := d.URL(ctx, "up/data", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(b)+3) {
		t.Errorf("GET %s: %d, %d bytes", u, resp.StatusCode, resp.ContentLength)
	}
	if err := d.Delete(ctx, "up"); err != nil {
		t.Fatal(err)
	}
}

// testMemoryBudget: with a budget of a single part, concurrent writers still complete
// (they take turns), and a writer abandoned by a cancelled context gives its buffer back.
func testMemoryBudget(t *testing.T, m *testenv.MinIO) {
	cfg := minioConfig(m, m.NewBucket(t))
	cfg.MemoryBudget = partSize
	d := newDriver(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	abandoned, stop := context.WithCancel(ctx)
	w, err := d.Writer(abandoned, "gone/data", nil)
	if err != nil {
		t.Fatal(err)
	}
	// More than a writer's first small buffers: it holds the whole budget.
	if _, err := w.Write(bytes.Repeat([]byte("x"), 1<<20)); err != nil {
		t.Fatal(err)
	}
	stop()

	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := d.Writer(ctx, fmt.Sprintf("b%d/data", i), nil)
			if err != nil {
				errs[i] = err
				return
			}
			if _, err := w.Write(bytes.Repeat([]byte{byte(i)}, 2*partSize+100)); err != nil {
				errs[i] = err
				return
			}
			errs[i] = w.Commit(ctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
		if fi, err := d.Stat(ctx, fmt.Sprintf("b%d/data", i)); err != nil || fi.Size != 2*partSize+100 {
			t.Errorf("writer %d: stat %+v %v", i, fi, err)
		}
	}
}

// testSidecarHidden: during a session the sidecar exists in the bucket but List does not
// report it, and Commit removes it.
func testSidecarHidden(t *testing.T, m *testenv.MinIO) {
	ctx := context.Background()
	d := newDriver(t, minioConfig(m, m.NewBucket(t)))
	w, err := d.Writer(ctx, "s/data", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	st, err := w.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := d.List(ctx, "s", "", 0); err != nil || len(l) != 0 {
		t.Errorf("List during the session: %s, %v", paths(l), err)
	}
	// Writers end with State.
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write after State succeeded")
	}
	// A State that adds nothing still supersedes the one it resumed from.
	w, err = d.Writer(ctx, "s/data", st)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := w.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Writer(ctx, "s/data", st); !errors.Is(err, driver.ErrPreconditionFailed) {
		t.Errorf("resume from a superseded state of the same size: want ErrPreconditionFailed, got %v", err)
	}
	if _, err := d.Writer(ctx, "s/other", st2); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("resume of a state at another path: want ErrNotFound, got %v", err)
	}
	w, err = d.Writer(ctx, "s/data", st2)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Writer(ctx, "s/data", st2); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("resume of a committed session: want ErrNotFound, got %v", err)
	}
	if err := d.Delete(ctx, "s/data"); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, "s"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("sidecar left after Commit: delete of the directory: %v", err)
	}
}

// TestThrottling: an endpoint answering SlowDown is retried by the SDK and surfaces as
// ErrThrottled only when the attempts are spent; a 500 as ErrUnavailable.
func TestThrottling(t *testing.T) {
	isolate(t)
	for _, c := range []struct {
		status int
		code   string
		want   error
	}{
		{503, "SlowDown", driver.ErrThrottled},
		{500, "InternalError", driver.ErrUnavailable},
	} {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(c.status)
			fmt.Fprintf(w, "<Error><Code>%s</Code><Message>m</Message></Error>", c.code)
		}))
		d := newDriver(t, testConfig{Bucket: "b", RegionEndpoint: srv.URL, AccessKey: "a", SecretKey: "s"},
			driver.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond})
		_, err := d.List(context.Background(), "x", "", 0)
		srv.Close()
		if !errors.Is(err, c.want) || errors.Is(err, driver.ErrNotFound) {
			t.Errorf("%s: want %v, got %v", c.code, c.want, err)
		}
		if n := calls.Load(); n != 3 {
			t.Errorf("%s: %d attempts, want 3", c.code, n)
		}
	}
}

// TestNewValidates: options breaking the driver's invariants are refused without a
// network call; the zero Options are valid.
func TestNewValidates(t *testing.T) {
	isolate(t)
	client := s3.NewTestClient("r", "http://127.0.0.1:1", "a", "s")
	for name, opts := range map[string]s3.Options{
		"small chunk":    {ChunkSize: 1 << 20},
		"large chunk":    {ChunkSize: 6 << 30},
		"small copy":     {CopyChunkSize: 1 << 20},
		"small budget":   {MemoryBudget: 6 << 20},
		"negative copy":  {CopyThreshold: -1},
		"negative conc.": {Concurrency: -1},
	} {
		if _, err := s3.New(client, "b", opts); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := s3.New(client, "", s3.Options{}); err == nil {
		t.Error("no bucket: New succeeded")
	}
	if _, err := s3.New(client, "b", s3.Options{}); err != nil {
		t.Errorf("zero options: %v", err)
	}
}

// recordingProxy forwards to m and records the payload headers of every request that
// sends object data (PUT with a body); corrupt, when set, flips one byte of such bodies.
type recordingProxy struct {
	mu      sync.Mutex
	sha256s []string
	crc32s  []string
	corrupt atomic.Bool
}

func (p *recordingProxy) start(t *testing.T, m *testenv.MinIO) string {
	target, err := url.Parse(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.ContentLength > 0 && r.Header.Get("X-Amz-Copy-Source") == "" {
			p.mu.Lock()
			p.sha256s = append(p.sha256s, r.Header.Get("X-Amz-Content-Sha256"))
			p.crc32s = append(p.crc32s, r.Header.Get("X-Amz-Checksum-Crc32"))
			p.mu.Unlock()
			if p.corrupt.Load() {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				b[len(b)/2] ^= 0xff
				r.Body = io.NopCloser(bytes.NewReader(b))
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// testPayloadIntegrity: object data goes out with a CRC32 checksum header and an unsigned
// SigV4 payload (no second SHA-256 pass over every byte on plain-HTTP endpoints); a body
// corrupted on the way is refused by the store and the write fails, leaving nothing
// stored. With checksums disabled the payload is signed instead, so a plain-HTTP body is
// still protected.
func testPayloadIntegrity(t *testing.T, m *testenv.MinIO) {
	ctx := context.Background()
	for _, checksums := range []bool{true, false} {
		t.Run(fmt.Sprintf("checksums=%v", checksums), func(t *testing.T) {
			p := &recordingProxy{}
			cfg := minioConfig(m, m.NewBucket(t))
			cfg.RegionEndpoint = p.start(t, m)
			cfg.DisableChecksums = !checksums
			d := newDriver(t, cfg, fastFail)
			data := bytes.Repeat([]byte("payload!"), (partSize+partSize/2)/8)
			w, err := d.Writer(ctx, "obj", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := d.Put(ctx, "small", bytes.NewReader(data[:100]), 100); err != nil {
				t.Fatal(err)
			}
			p.mu.Lock()
			sums, crcs := p.sha256s, p.crc32s
			p.mu.Unlock()
			if len(sums) < 3 {
				t.Fatalf("recorded %d data requests, want at least 3 (2 parts and a put)", len(sums))
			}
			for i := range sums {
				signed := len(sums[i]) == 64
				if checksums && (sums[i] != "UNSIGNED-PAYLOAD" || crcs[i] == "") {
					t.Errorf("request %d: x-amz-content-sha256 %q, crc32 %q; want UNSIGNED-PAYLOAD and a checksum", i, sums[i], crcs[i])
				}
				if !checksums && !signed {
					t.Errorf("request %d: x-amz-content-sha256 %q, want the payload's SHA-256", i, sums[i])
				}
			}
			assertContent(t, d, "obj", data)

			// A body corrupted in transit never becomes (part of) an object.
			p.corrupt.Store(true)
			err = d.Put(ctx, "corrupt", bytes.NewReader(data[:4096]), 4096)
			if err == nil {
				t.Fatal("put of a corrupted body succeeded")
			}
			if errors.Is(err, driver.ErrNotFound) {
				t.Errorf("corrupted put: %v, must not be ErrNotFound", err)
			}
			if _, err := d.Stat(ctx, "corrupt"); !errors.Is(err, driver.ErrNotFound) {
				t.Errorf("stat after a refused put: %v, want ErrNotFound", err)
			}
			w, err = d.Writer(ctx, "corrupt-multi", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = w.Write(data)
			if err == nil {
				err = w.Commit(ctx)
			}
			if err == nil {
				t.Fatal("multipart write of corrupted parts succeeded")
			}
			_ = w.Abort(ctx)
			if _, err := d.Stat(ctx, "corrupt-multi"); !errors.Is(err, driver.ErrNotFound) {
				t.Errorf("stat after a refused multipart write: %v, want ErrNotFound", err)
			}
		})
	}
}

func assertContent(t *testing.T, d driver.Driver, p string, want []byte) {
	t.Helper()
	rc, err := d.Reader(context.Background(), p, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %s: %d bytes (want %d), equal %v, %v", p, len(got), len(want), bytes.Equal(got, want), err)
	}
}

// testPurgeSessions: PurgeSessions aborts the multipart uploads of every session of an
// object (resuming them is ErrNotFound) and leaves other objects' sessions resumable.
func testPurgeSessions(t *testing.T, m *testenv.MinIO) {
	ctx := context.Background()
	d := newDriver(t, minioConfig(m, m.NewBucket(t)))
	start := func(p string) []byte {
		w, err := d.Writer(ctx, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(bytes.Repeat([]byte("p"), partSize+partSize/2)); err != nil {
			t.Fatal(err)
		}
		st, err := w.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	const purged, kept = "repo/_uploads/a/data", "repo/_uploads/a/data2"
	states := [][]byte{start(purged), start(purged)}
	keptState := start(kept)
	if err := d.PurgeSessions(ctx, purged); err != nil {
		t.Fatal(err)
	}
	for _, st := range states {
		if _, err := d.Writer(ctx, purged, st); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("resume %s after PurgeSessions: %v, want ErrNotFound", purged, err)
		}
	}
	w, err := d.Writer(ctx, kept, keptState)
	if err != nil {
		t.Fatalf("another object's session: %v", err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.PurgeSessions(ctx, "nothing/here"); err != nil {
		t.Errorf("PurgeSessions of an object without sessions: %v", err)
	}
}

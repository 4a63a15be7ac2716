package gcs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/parts"
	"github.com/registryd/registryd/driver/testsuite"
	"github.com/registryd/registryd/internal/testenv"
)

const partSize = 5 << 20

// newTestClient returns an unauthenticated client of the JSON API at endpoint (a URL
// without a path gets "/storage/v1/"), as registryd builds one for an emulator.
func newTestClient(t *testing.T, endpoint string) *storage.Client {
	t.Helper()
	if u, err := url.Parse(endpoint); err == nil && (u.Path == "" || u.Path == "/") {
		endpoint = strings.TrimSuffix(endpoint, "/") + "/storage/v1/"
	}
	c, err := storage.NewClient(context.Background(), option.WithEndpoint(endpoint), option.WithoutAuthentication())
	if err != nil {
		t.Fatalf("storage.NewClient: %v", err)
	}
	return c
}

// newDriver returns a driver on bucket through an unauthenticated client of endpoint.
func newDriver(t *testing.T, endpoint, bucket string, opts Options) *Driver {
	t.Helper()
	d, err := New(newTestClient(t, endpoint), bucket, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// signingKey returns a fresh PEM RSA private key for V4 URL signing.
func signingKey(t *testing.T) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestConformance runs the driver suite against fake-gcs-server with a URL signer (so URL
// signs real V4 URLs, which the emulator serves).
func TestConformance(t *testing.T) {
	gcs := testenv.StartFakeGCS(t)
	d := newDriver(t, gcs.Endpoint, gcs.NewBucket(t), Options{
		RootDirectory: "/registry/", ChunkSize: partSize, InsecureURLs: true,
		SignerEmail: "registryd@test.iam.gserviceaccount.com", SignerKey: signingKey(t),
	})
	testsuite.Run(t, testsuite.Harness{Driver: d, PartSize: partSize})
}

// TestNoSigner: without a signer URL is unsupported.
func TestNoSigner(t *testing.T) {
	gcs := testenv.StartFakeGCS(t)
	d := newDriver(t, gcs.Endpoint, gcs.NewBucket(t), Options{})
	if _, err := d.URL(context.Background(), "a/b", time.Minute); !errors.Is(err, driver.ErrUnsupported) {
		t.Errorf("URL without a signer: want ErrUnsupported, got %v", err)
	}
}

// rawNames lists every object name under prefix, hidden ones included.
func rawNames(t *testing.T, d *Driver, prefix string) []string {
	t.Helper()
	var names []string
	it := d.bucket.Objects(context.Background(), &storage.Query{Prefix: prefix})
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, a.Name)
	}
}

// TestWriterSessions covers what the suite cannot see: hidden session objects, resuming in
// another Driver with another part size, two writers resumed from one state, compose of
// more than 32 components, and the clean-up of an abandoned session by a recursive Delete.
func TestWriterSessions(t *testing.T) {
	gcs := testenv.StartFakeGCS(t)
	bucket := gcs.NewBucket(t)
	small := newDriver(t, gcs.Endpoint, bucket, Options{ChunkSize: minChunkSize})
	other := newDriver(t, gcs.Endpoint, bucket, Options{ChunkSize: 1 << 20})
	ctx := context.Background()
	data := make([]byte, 40*minChunkSize+123)
	_, _ = rand.Read(data)

	t.Run("HiddenAndResumedElsewhere", func(t *testing.T) {
		p := "s1/up/data"
		w, err := small.Writer(ctx, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data[:20*minChunkSize+5]); err != nil {
			t.Fatal(err)
		}
		st, err := w.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(rawNames(t, small, "s1/")); n != 22 { // 20 parts, a tail, the manifest
			t.Errorf("session holds %d objects, want 22", n)
		}
		l, err := small.List(ctx, "s1/up", "", 0)
		if err != nil || len(l) != 0 {
			t.Errorf("List shows session objects: %v, %v", l, err)
		}
		// Resume in another Driver (another process) with another part size.
		w, err = other.Writer(ctx, p, st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data[20*minChunkSize+5:]); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		r, err := small.Reader(ctx, p, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("content after resume elsewhere: %d bytes, %v", len(got), err)
		}
		if names := rawNames(t, small, "s1/"); len(names) != 1 || names[0] != p {
			t.Errorf("after commit: %v", names)
		}
		if _, err := other.Writer(ctx, p, st); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("resume of a committed session: want ErrNotFound, got %v", err)
		}
	})

	t.Run("TwoWritersOneState", func(t *testing.T) {
		p := "s2/data"
		w, err := small.Writer(ctx, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := w.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a, err := small.Writer(ctx, p, st)
		if err != nil {
			t.Fatal(err)
		}
		b, err := small.Writer(ctx, p, st)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = a.Write([]byte("aaaa"))
		_, _ = b.Write([]byte("bbbb"))
		sa, err := a.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.State(ctx); !errors.Is(err, driver.ErrPreconditionFailed) {
			t.Errorf("second State from one state: want ErrPreconditionFailed, got %v", err)
		}
		if _, err := small.Writer(ctx, p, st); !errors.Is(err, driver.ErrPreconditionFailed) {
			t.Errorf("resume from the superseded state: want ErrPreconditionFailed, got %v", err)
		}
		// A writer resumed from the old state before the session moved cannot commit.
		w, err = small.Writer(ctx, p, sa)
		if err != nil {
			t.Fatal(err)
		}
		c, err := small.Writer(ctx, p, sa)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte("cc"))
		if _, err := w.State(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Commit(ctx); !errors.Is(err, driver.ErrPreconditionFailed) {
			t.Errorf("commit of a writer whose session moved on: want ErrPreconditionFailed, got %v", err)
		}
		if _, err := small.Stat(ctx, p); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("refused commit created the object: %v", err)
		}
		if err := small.Delete(ctx, "s2"); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("clean-up: %v", err)
		}
	})

	t.Run("BudgetOfOnePart", func(t *testing.T) {
		// Concurrent writers sharing a budget of a single part buffer all finish, and a
		// writer dropped mid-stream (its request failed) returns its budget when its ctx
		// ends.
		tight := newDriver(t, gcs.Endpoint, bucket, Options{ChunkSize: minChunkSize})
		tight.budget = parts.NewBudget(tight.chunk, tight.chunk)
		failed, cancel := context.WithCancel(ctx)
		dropped, err := tight.Writer(failed, "s4/dropped", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dropped.Write(data[:parts.DefaultSmall+1]); err != nil { // holds the budget
			t.Fatal(err)
		}
		cancel()
		done := make(chan error, 4)
		for i := range 4 {
			go func() {
				p := fmt.Sprintf("s4/w%d", i)
				w, err := tight.Writer(ctx, p, nil)
				if err != nil {
					done <- err
					return
				}
				for b := data[:3*minChunkSize+77]; len(b) > 0; b = b[min(len(b), 10000):] {
					if _, err := w.Write(b[:min(len(b), 10000)]); err != nil {
						done <- err
						return
					}
				}
				done <- w.Commit(ctx)
			}()
		}
		timeout := time.After(60 * time.Second)
		for range 4 {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-timeout:
				t.Fatal("writers sharing a one-part budget are stuck")
			}
		}
		if !tight.budget.TryAcquire(tight.chunk) {
			t.Error("budget not returned after the writers ended")
		}
		if err := tight.Delete(ctx, "s4"); err != nil {
			t.Error(err)
		}
	})

	t.Run("DeleteRemovesAbandonedSession", func(t *testing.T) {
		w, err := small.Writer(ctx, "s3/up/data", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(data[:3*minChunkSize])
		if _, err := w.State(ctx); err != nil {
			t.Fatal(err)
		}
		if err := small.Delete(ctx, "s3/up"); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("Delete of a directory holding only a session: want ErrNotFound, got %v", err)
		}
		if names := rawNames(t, small, "s3/"); len(names) != 0 {
			t.Errorf("session objects left: %v", names)
		}
	})
}

// expectClass runs every operation against d and checks each fails with want and never
// with ErrNotFound.
func expectClass(t *testing.T, d *Driver, want error, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	resume := state{seq: 1, gen: 1}.encode()
	ops := []struct {
		name string
		fn   func() error
	}{
		{"Stat", func() error { _, err := d.Stat(ctx, "x/obj"); return err }},
		{"Reader", func() error {
			r, err := d.Reader(ctx, "x/obj", 0, -1)
			if err == nil {
				_, err = io.ReadAll(r)
				r.Close()
			}
			return err
		}},
		{"Put", func() error { return d.Put(ctx, "x/obj", strings.NewReader("abc"), 3) }},
		{"List", func() error { _, err := d.List(ctx, "x", "", 0); return err }},
		{"Delete", func() error { return d.Delete(ctx, "x/obj") }},
		{"Copy", func() error { return d.Copy(ctx, "x/obj", "x/dst") }},
		{"WriterSmallCommit", func() error {
			w, err := d.Writer(ctx, "x/w1", nil)
			if err != nil {
				return err
			}
			if _, err := w.Write([]byte("small")); err != nil {
				return err
			}
			return w.Commit(ctx)
		}},
		{"WriterPartsCommit", func() error {
			w, err := d.Writer(ctx, "x/w2", nil)
			if err != nil {
				return err
			}
			if _, err := w.Write(make([]byte, d.chunk+1)); err != nil {
				return err
			}
			return w.Commit(ctx)
		}},
		{"WriterState", func() error {
			w, err := d.Writer(ctx, "x/w3", nil)
			if err != nil {
				return err
			}
			_, err = w.State(ctx)
			return err
		}},
		{"WriterResume", func() error { _, err := d.Writer(ctx, "x/w4", resume); return err }},
	}
	for _, op := range ops {
		start := time.Now()
		err := op.fn()
		t.Logf("%s: %v", op.name, err)
		if !errors.Is(err, want) || errors.Is(err, driver.ErrNotFound) {
			t.Errorf("%s: want %v (and not ErrNotFound), got %v", op.name, want, err)
		}
		if el := time.Since(start); el > within {
			t.Errorf("%s took %v, want under %v", op.name, el, within)
		}
	}
}

// TestMisconfiguration checks the error classes of real failures: a missing bucket, an
// API denying access, an unreachable endpoint. (Refused credentials: cmd/registryd.)
func TestMisconfiguration(t *testing.T) {
	gcs := testenv.StartFakeGCS(t)
	opts := Options{ChunkSize: minChunkSize}

	t.Run("MissingBucket", func(t *testing.T) {
		expectClass(t, newDriver(t, gcs.Endpoint, "no-such-bucket", opts), driver.ErrMisconfigured, 30*time.Second)
	})

	t.Run("AccessDenied", func(t *testing.T) {
		// fake-gcs-server does not check authorization: this server answers every call as
		// GCS answers a principal without a role on the bucket.
		deny := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"error":{"code":403,"message":"registryd@test.iam.gserviceaccount.com does not have storage.objects.get access","errors":[{"domain":"global","reason":"forbidden","message":"denied"}]}}`)
		}))
		t.Cleanup(deny.Close)
		expectClass(t, newDriver(t, deny.URL, gcs.NewBucket(t), opts), driver.ErrPermission, 30*time.Second)
	})

	t.Run("Unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // a closed loopback port: connections are refused
		expectClass(t, newDriver(t, "http://"+addr, gcs.NewBucket(t), opts), driver.ErrUnavailable, 10*time.Second)
	})
}

// TestNewValidates checks the options New refuses, without any request.
func TestNewValidates(t *testing.T) {
	client := newTestClient(t, "http://127.0.0.1:1")
	for _, c := range []struct {
		name   string
		bucket string
		opts   Options
	}{
		{"NoBucket", "", Options{}},
		{"BucketName", "a/b", Options{}},
		{"BadRoot", "b", Options{RootDirectory: "a/../b"}},
		{"SmallChunk", "b", Options{ChunkSize: 1000}},
		{"LargeChunk", "b", Options{ChunkSize: 2 << 30}},
		{"NegativeConcurrency", "b", Options{Concurrency: -1}},
		{"Concurrency", "b", Options{Concurrency: maxConcurrency + 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := New(client, c.bucket, c.opts); err == nil {
				t.Error("New succeeded")
			}
		})
	}
	if _, err := New(client, "b", Options{}); err != nil {
		t.Errorf("zero options: %v", err)
	}
}

// TestEncodings checks that states and manifests round-trip and that damaged ones are
// refused.
func TestEncodings(t *testing.T) {
	s := state{seq: 4000, gen: 1_700_000_000_123_456, size: 256 << 30}
	_, _ = rand.Read(s.session[:])
	b := s.encode()
	if len(b) > 64 {
		t.Errorf("state of %d bytes", len(b))
	}
	got, err := decodeState(b)
	if err != nil || got != s {
		t.Fatalf("state round trip: %+v, %v", got, err)
	}
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 0x40
		if _, err := decodeState(bad); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("state with byte %d flipped: %v", i, err)
		}
	}
	segs := []segment{{parts: 3, partSize: 5 << 20, tail: 17}, {parts: 0, partSize: 16 << 20, tail: 1}}
	_, _ = rand.Read(segs[0].writer[:])
	m := encodeManifest(segs)
	back, err := decodeManifest(m)
	if err != nil || fmt.Sprint(back) != fmt.Sprint(segs) {
		t.Fatalf("manifest round trip: %v, %v", back, err)
	}
	if _, err := decodeManifest(m[:len(m)-1]); err == nil {
		t.Error("truncated manifest accepted")
	}
}

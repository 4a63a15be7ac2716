package gcs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/parts"
	"github.com/registryd/registryd/driver/testsuite"
	"github.com/registryd/registryd/internal/testenv"
)

const partSize = 5 << 20

// tokenServer is a stand-in for Google's OAuth token endpoint: it grants every JWT
// assertion, or refuses every one as Google refuses a revoked key.
func tokenServer(t *testing.T, refuse bool) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	calls := new(atomic.Int64)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if refuse || r.Form.Get("assertion") == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)
			return
		}
		_, _ = io.WriteString(w, `{"access_token":"test-token","token_type":"Bearer","expires_in":3600}`)
	}))
	t.Cleanup(s.Close)
	return s, calls
}

// serviceAccountKey returns a service account key document with a fresh RSA key whose
// token endpoint is tokenURL.
func serviceAccountKey(t *testing.T, tokenURL string) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "test",
		"private_key_id": "k1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "registryd@test.iam.gserviceaccount.com",
		"client_id":      "1",
		"token_uri":      tokenURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newDriver(t *testing.T, cfg config.GCS) *Driver {
	t.Helper()
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// TestConformance runs the driver suite against fake-gcs-server, authenticating with a
// service account key file (so URL signs real V4 URLs, which the emulator serves).
func TestConformance(t *testing.T) {
	gcs := testenv.StartFakeGCS(t)
	keyFile := filepath.Join(t.TempDir(), "key.json")
	tokens, calls := tokenServer(t, false)
	if err := os.WriteFile(keyFile, serviceAccountKey(t, tokens.URL+"/token"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, config.GCS{
		Bucket: gcs.NewBucket(t), RootDirectory: "/registry/", Endpoint: gcs.Endpoint,
		KeyFile: keyFile, ChunkSize: partSize,
	})
	if d.signer == nil {
		t.Fatal("a service account key did not give a URL signer")
	}
	testsuite.Run(t, testsuite.Harness{Driver: d, PartSize: partSize})
	if calls.Load() == 0 {
		t.Error("the client never asked the token endpoint: requests went unauthenticated")
	}
}

// TestEmulatorHostAndNoKey: STORAGE_EMULATOR_HOST alone selects the emulator without
// authentication, and URL is then unsupported.
func TestEmulatorHostAndNoKey(t *testing.T) {
	gcs := testenv.StartFakeGCS(t)
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(gcs.URL, "http://"))
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	d := newDriver(t, config.GCS{Bucket: gcs.NewBucket(t)})
	ctx := context.Background()
	if err := d.Put(ctx, "a/b", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	if fi, err := d.Stat(ctx, "a/b"); err != nil || fi.Size != 5 {
		t.Fatalf("stat: %+v, %v", fi, err)
	}
	if _, err := d.URL(ctx, "a/b", time.Minute); !errors.Is(err, driver.ErrUnsupported) {
		t.Errorf("URL without a key: want ErrUnsupported, got %v", err)
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
	small := newDriver(t, config.GCS{Bucket: bucket, Endpoint: gcs.Endpoint, ChunkSize: minChunkSize})
	other := newDriver(t, config.GCS{Bucket: bucket, Endpoint: gcs.Endpoint, ChunkSize: 1 << 20})
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
		tight := newDriver(t, config.GCS{Bucket: bucket, Endpoint: gcs.Endpoint, ChunkSize: minChunkSize})
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

// TestMisconfiguration checks the error classes of real failures: a missing bucket, refused
// credentials, an API denying access, an unreachable endpoint.
func TestMisconfiguration(t *testing.T) {
	gcs := testenv.StartFakeGCS(t)
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	base := config.GCS{Bucket: gcs.NewBucket(t), Endpoint: gcs.Endpoint, ChunkSize: minChunkSize}

	t.Run("MissingBucket", func(t *testing.T) {
		cfg := base
		cfg.Bucket = "no-such-bucket"
		expectClass(t, newDriver(t, cfg), driver.ErrMisconfigured, 30*time.Second)
	})

	t.Run("RefusedCredentials", func(t *testing.T) {
		// The token endpoint refuses the key (invalid_grant), as Google does for a deleted
		// or revoked service account key.
		cfg := base
		refusing, calls := tokenServer(t, true)
		cfg.Credentials = string(serviceAccountKey(t, refusing.URL+"/token"))
		defer func() {
			if calls.Load() == 0 {
				t.Error("the token endpoint was never asked")
			}
		}()
		expectClass(t, newDriver(t, cfg), driver.ErrPermission, 30*time.Second)
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
		cfg := base
		cfg.Endpoint = deny.URL
		expectClass(t, newDriver(t, cfg), driver.ErrPermission, 30*time.Second)
	})

	t.Run("Unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // a closed loopback port: connections are refused
		cfg := base
		cfg.Endpoint = "http://" + addr
		expectClass(t, newDriver(t, cfg), driver.ErrUnavailable, 10*time.Second)
	})
}

// TestNewValidates checks the configuration errors New reports without any request.
func TestNewValidates(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	for _, c := range []struct {
		name string
		cfg  config.GCS
		want string
	}{
		{"NoBucket", config.GCS{Endpoint: "http://127.0.0.1:1"}, "bucket"},
		{"BadRoot", config.GCS{Bucket: "b", Endpoint: "http://127.0.0.1:1", RootDirectory: "a/../b"}, "rootdirectory"},
		{"SmallChunk", config.GCS{Bucket: "b", Endpoint: "http://127.0.0.1:1", ChunkSize: 1000}, "chunksize"},
		{"Concurrency", config.GCS{Bucket: "b", Endpoint: "http://127.0.0.1:1", MaxConcurrency: -1}, "maxconcurrency"},
		{"Endpoint", config.GCS{Bucket: "b", Endpoint: "ftp://x"}, "endpoint"},
		{"BothCredentials", config.GCS{Bucket: "b", Endpoint: "http://127.0.0.1:1", KeyFile: "k", Credentials: "{}"}, "at most one"},
		{"MissingKeyFile", config.GCS{Bucket: "b", Endpoint: "http://127.0.0.1:1", KeyFile: "/nonexistent/key.json"}, "keyfile"},
		{"NotCredentials", config.GCS{Bucket: "b", Endpoint: "http://127.0.0.1:1", Credentials: "[1]"}, "credentials"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(context.Background(), c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New: want an error naming %q, got %v", c.want, err)
			}
		})
	}
	u, err := endpointURL("", "127.0.0.1:4443")
	if err != nil || u.String() != "http://127.0.0.1:4443/storage/v1/" {
		t.Errorf("emulator host endpoint: %v, %v", u, err)
	}
	u, err = endpointURL("https://storage.example.com", "ignored:1")
	if err != nil || u.String() != "https://storage.example.com/storage/v1/" {
		t.Errorf("configured endpoint: %v, %v", u, err)
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

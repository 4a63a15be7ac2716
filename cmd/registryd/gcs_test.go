package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/gcs"
	"github.com/registryd/registryd/driver/testsuite"
	"github.com/registryd/registryd/internal/testenv"
)

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

// openTestGCS is openGCS with the test's default retry policy; the driver is closed at
// the end of the test.
func openTestGCS(t *testing.T, cfg config.GCS) *gcs.Driver {
	t.Helper()
	d, err := openGCS(context.Background(), cfg, driver.RetryPolicy{MaxAttempts: 2, BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("openGCS: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// TestGCSKeyFile runs the driver suite against fake-gcs-server through the client
// openGCS builds, authenticating with a service account key file (so URL signs real V4
// URLs, which the emulator serves).
func TestGCSKeyFile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fake-gcs-server")
	}
	fake := testenv.StartFakeGCS(t)
	keyFile := filepath.Join(t.TempDir(), "key.json")
	tokens, calls := tokenServer(t, false)
	if err := os.WriteFile(keyFile, serviceAccountKey(t, tokens.URL+"/token"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := openTestGCS(t, config.GCS{
		Bucket: fake.NewBucket(t), RootDirectory: "/registry/", Endpoint: fake.Endpoint,
		KeyFile: keyFile, ChunkSize: 5 << 20,
	})
	testsuite.Run(t, testsuite.Harness{Driver: d, PartSize: 5 << 20})
	if calls.Load() == 0 {
		t.Error("the client never asked the token endpoint: requests went unauthenticated")
	}
}

// TestGCSEmulatorHostAndNoKey: STORAGE_EMULATOR_HOST alone selects the emulator without
// authentication, and URL is then unsupported.
func TestGCSEmulatorHostAndNoKey(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fake-gcs-server")
	}
	fake := testenv.StartFakeGCS(t)
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(fake.URL, "http://"))
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	d := openTestGCS(t, config.GCS{Bucket: fake.NewBucket(t)})
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

// TestGCSRefusedCredentials: a key the token endpoint refuses (invalid_grant, as Google
// refuses a deleted or revoked service account key) is ErrPermission.
func TestGCSRefusedCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fake-gcs-server")
	}
	fake := testenv.StartFakeGCS(t)
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	refusing, calls := tokenServer(t, true)
	d := openTestGCS(t, config.GCS{Bucket: fake.NewBucket(t), Endpoint: fake.Endpoint,
		Credentials: config.GCSCredentials(serviceAccountKey(t, refusing.URL+"/token"))})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.Stat(ctx, "obj"); !errors.Is(err, driver.ErrPermission) || errors.Is(err, driver.ErrNotFound) {
		t.Errorf("stat: want ErrPermission, got %v", err)
	}
	if calls.Load() == 0 {
		t.Error("the token endpoint was never asked")
	}
}

// TestGCSClientErrors checks the errors of building the client, without any request.
func TestGCSClientErrors(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	for _, c := range []struct {
		name string
		cfg  config.GCS
		want string
	}{
		{"NoBucket", config.GCS{Endpoint: "http://127.0.0.1:1"}, "bucket"},
		{"Endpoint", config.GCS{Bucket: "b", Endpoint: "ftp://x"}, "endpoint"},
		{"BothCredentials", config.GCS{Bucket: "b", Endpoint: "http://127.0.0.1:1", KeyFile: "k", Credentials: "{}"}, "at most one"},
		{"MissingKeyFile", config.GCS{Bucket: "b", Endpoint: "http://127.0.0.1:1", KeyFile: "/nonexistent/key.json"}, "keyfile"},
		{"NotCredentials", config.GCS{Bucket: "b", Endpoint: "http://127.0.0.1:1", Credentials: "[1]"}, "credentials"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := openGCS(context.Background(), c.cfg, driver.DefaultRetryPolicy())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("openGCS: want an error naming %q, got %v", c.want, err)
			}
		})
	}
	u, err := gcsEndpointURL("", "127.0.0.1:4443")
	if err != nil || u.String() != "http://127.0.0.1:4443/storage/v1/" {
		t.Errorf("emulator host endpoint: %v, %v", u, err)
	}
	u, err = gcsEndpointURL("https://storage.example.com", "ignored:1")
	if err != nil || u.String() != "https://storage.example.com/storage/v1/" {
		t.Errorf("configured endpoint: %v, %v", u, err)
	}
}

package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
)

// FakeGCS is a running fake-gcs-server (in-memory backend) speaking plain http.
type FakeGCS struct {
	*Process
	// URL is "http://127.0.0.1:<port>": the XML API host (object reads, signed URLs) and
	// the value STORAGE_EMULATOR_HOST would take.
	URL string
	// Endpoint is the JSON API endpoint, URL + "/storage/v1/".
	Endpoint string
}

// StartFakeGCS starts fake-gcs-server on a free loopback port, with its in-memory backend
// and its working directory under a temporary directory, and stops it when the test ends.
// A missing fake-gcs-server fails the test.
func StartFakeGCS(t testing.TB) *FakeGCS {
	t.Helper()
	bin := Tool(t, "fake-gcs-server")
	port := FreePort(t)
	addr := Addr(port)
	base := "http://" + addr
	p := Start(t, Spec{
		Name: "fake-gcs-server",
		Path: bin,
		Args: []string{
			"-scheme", "http", "-host", "127.0.0.1", "-port", strconv.Itoa(port),
			"-backend", "memory", "-public-host", addr, "-external-url", base,
			"-log-level", "warn",
		},
		Dir:   t.TempDir(),
		Addr:  addr,
		Ready: HTTPReady(base + "/storage/v1/b"),
	})
	return &FakeGCS{Process: p, URL: base, Endpoint: base + "/storage/v1/"}
}

// NewBucket creates a bucket with a fresh random name and returns its name.
func (f *FakeGCS) NewBucket(t testing.TB) string {
	t.Helper()
	return createNamed(t, "bucket", f.createBucket)
}

// createBucket sends buckets.insert over the JSON API directly, so the test environment
// does not depend on the client library under test.
func (f *FakeGCS) createBucket(ctx context.Context, name string) error {
	body := fmt.Sprintf(`{"name":%q}`, name)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.Endpoint+"b?project=test", bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("create bucket: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

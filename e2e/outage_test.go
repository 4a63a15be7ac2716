package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/registryd/registryd/internal/testenv"
)

// TestBackendOutage stops MinIO while a pull and a chunked push are in flight: the client
// sees 5xx or a cut stream, never 404 and never a complete wrong body; after MinIO comes
// back, the same pull succeeds and the push resumes from its last acknowledged offset.
func TestBackendOutage(t *testing.T) {
	dir, port := t.TempDir(), testenv.FreePort(t)
	m := testenv.StartMinIOAt(t, dir, port)
	bucket := m.NewBucket(t)
	reg := testenv.StartRegistryd(t, registryConfig(s3Storage(m, bucket, m.AccessKey, m.SecretKey, m.Endpoint), ""),
		"REGISTRY_STORAGE_RETRY_MAXATTEMPTS=2")
	rng := rand.New(rand.NewPCG(7, 7))
	blobA := make([]byte, 48<<20)
	blobB := make([]byte, 24<<20)
	for _, b := range [][]byte{blobA, blobB} {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	}
	dA, err := chunkedPush([]*testenv.Registryd{reg}, "outage/a", blobA, rng, 0)
	if err != nil {
		t.Fatal(err)
	}
	dB := fmt.Sprintf("sha256:%x", sha256.Sum256(blobB))

	// Push B: the first chunk is acknowledged before the outage.
	resp, err := http.Post(reg.URL+"/v2/outage/b/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	half := len(blobB) / 2
	req, _ := http.NewRequest(http.MethodPatch, reg.URL+loc, bytes.NewReader(blobB[:half]))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("first chunk: %d", resp.StatusCode)
	}
	acked := resp.Header.Get("Location")

	// In flight: a slow pull of A and a slow second chunk of B.
	pull, err := http.Get(reg.URL + "/v2/outage/a/blobs/" + dA)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(pull.Body, head); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	req, _ = http.NewRequest(http.MethodPatch, reg.URL+acked, pr)
	patch := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			patch <- nil
			return
		}
		patch <- resp
	}()
	if _, err := pw.Write(blobB[half : half+(1<<20)]); err != nil {
		t.Fatal(err)
	}

	m.Kill() // an abrupt outage, not a graceful shutdown

	go func() {
		_, _ = pw.Write(blobB[half+(1<<20):])
		pw.Close()
	}()
	select {
	case resp := <-patch:
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 500 {
				t.Errorf("PATCH during the outage: %d %s, want 5xx", resp.StatusCode, body)
			}
		}
	case <-time.After(90 * time.Second):
		t.Fatal("PATCH during the outage hung")
	}
	rest, err := io.ReadAll(pull.Body)
	pull.Body.Close()
	if err == nil && bytes.Equal(append(head, rest...), blobA) {
		t.Log("the in-flight pull was already served from buffers before the outage")
	} else if err == nil {
		t.Errorf("in-flight pull ended cleanly with %d wrong or short bytes", len(head)+len(rest))
	}
	for _, rq := range []struct{ method, path string }{
		{"GET", "/v2/outage/a/blobs/" + dA},
		{"HEAD", "/v2/outage/a/blobs/" + dA},
		{"GET", "/v2/outage/a/tags/list"},
		{"PATCH", acked},
	} {
		req, _ := http.NewRequest(rq.method, reg.URL+rq.path, strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 500 {
			t.Errorf("%s %s during the outage: %d, want 5xx", rq.method, rq.path, resp.StatusCode)
		}
	}

	testenv.StartMinIOAt(t, dir, port)

	got, status, err := getBlob(reg.URL + "/v2/outage/a/blobs/" + dA)
	if err != nil || status != 200 || !bytes.Equal(got, blobA) {
		t.Fatalf("pull after recovery: %d, %d bytes, %v", status, len(got), err)
	}
	req, _ = http.NewRequest(http.MethodPatch, reg.URL+acked, bytes.NewReader(blobB[half:]))
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", half, len(blobB)-1))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("resume from the last acknowledged offset: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodPut, reg.URL+resp.Header.Get("Location")+"&digest="+dB, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("finish after recovery: %d", resp.StatusCode)
	}
	if got, status, _ := getBlob(reg.URL + "/v2/outage/b/blobs/" + dB); status != 200 || !bytes.Equal(got, blobB) {
		t.Fatalf("pushed blob after recovery: %d, %d bytes", status, len(got))
	}
}

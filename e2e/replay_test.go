package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

// dropProxy forwards every request to upstream; the response to a PATCH is read in full
// from upstream (so the registry has answered) and then lost: the client's connection is
// closed without a byte of it. It counts the responses it dropped.
func dropProxy(t *testing.T, upstream string) (url string, dropped *atomic.Int64) {
	t.Helper()
	dropped = new(atomic.Int64)
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, upstream+r.URL.RequestURI(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		req.ContentLength = r.ContentLength
		resp, err := tr.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if r.Method == http.MethodPatch {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				dropped.Add(1)
				conn.Close()
				return
			}
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s.URL, dropped
}

// TestLostPatchResponse: on every backend, PATCH responses are lost by a proxy after the
// registry answered them, and the client carries on with the Location it held before, on
// another replica where the backend is shared: the same PATCH sent again is accepted (the
// repeated bytes skipped), a status GET answers the true Range with a Location continuing
// from it, a PATCH of other bytes is 416 with that Range and Location, and following them
// completes the upload; the blob pulled has the right digest. A token used in another
// repository stays 404 BLOB_UPLOAD_UNKNOWN.
func TestLostPatchResponse(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			storage := b.storage(t)
			first := startReplicas(t, storage, 1)[0]
			second := first
			if b.name != "inmemory" { // an in-memory store is not shared between processes
				second = startReplicas(t, storage, 1)[0]
			}
			proxy, dropped := dropProxy(t, first.URL)
			rng := rand.New(rand.NewPCG(11, 11))
			blob := fxRandom(rng, 6<<20+512<<10)
			d := digest.FromBytes(blob)
			cr := func(from, to int) map[string]string {
				return map[string]string{"Content-Range": fmt.Sprintf("%d-%d", from, to-1), "Content-Type": "application/octet-stream"}
			}
			rangeEnd := func(r fxResult) int {
				t.Helper()
				n, err := strconv.Atoi(strings.TrimPrefix(r.header.Get("Range"), "0-"))
				if err != nil || r.header.Get("Location") == "" {
					t.Fatalf("answer without Range and Location: %q %q", r.header.Get("Range"), r.header.Get("Location"))
				}
				return n + 1
			}
			const repo = "/v2/lost/resp"
			r := fxMust(t, 202, "POST", first.URL+repo+"/blobs/uploads/", nil, nil)
			r = fxMust(t, 202, "PATCH", first.URL+r.header.Get("Location"), cr(0, 2<<20), blob[:2<<20])
			loc1 := r.header.Get("Location")

			// 1. A chunk across the backends' 5 MiB part size; its response is lost. The
			// client sends it again with the Location it has, to the other replica.
			const x, y = 2 << 20, 5<<20 + 512<<10
			if _, err := fxDo("PATCH", proxy+loc1, cr(x, y), blob[x:y]); err == nil || dropped.Load() != 1 {
				t.Fatalf("the proxy did not lose the PATCH response: %v, %d dropped", err, dropped.Load())
			}
			r = fxMust(t, 202, "PATCH", second.URL+loc1, cr(x, y), blob[x:y])
			if got := rangeEnd(r); got != y {
				t.Fatalf("repeated PATCH: Range end %d, want %d", got, y)
			}
			loc2 := r.header.Get("Location")

			// 2. The next response is lost too; the client asks for the upload's status.
			const z = 6 << 20
			if _, err := fxDo("PATCH", proxy+loc2, cr(y, z), blob[y:z]); err == nil || dropped.Load() != 2 {
				t.Fatalf("the proxy did not lose the PATCH response: %v, %d dropped", err, dropped.Load())
			}
			r = fxMust(t, 204, "GET", second.URL+loc2, nil, nil)
			if got := rangeEnd(r); got != z {
				t.Fatalf("status with the older token: Range end %d, want %d", got, z)
			}

			// 3. A replay that does not repeat the acknowledged bytes: 416 with the true Range
			// and a Location continuing from it, which the client follows to the end.
			refused := fxMust(t, 416, "PATCH", first.URL+loc2, cr(y, z), bytes.Repeat([]byte{'j'}, z-y))
			if got := rangeEnd(refused); got != z || fxCode(refused) != "BLOB_UPLOAD_INVALID" {
				t.Fatalf("PATCH of other bytes: Range end %d %s, want %d BLOB_UPLOAD_INVALID", got, fxCode(refused), z)
			}
			// A token used in another repository is unknown there.
			other := strings.Replace(loc1, repo+"/", "/v2/lost/other/", 1)
			if r, err := fxDo("PATCH", second.URL+other, cr(x, y), blob[x:y]); err != nil || r.status != 404 || fxCode(r) != "BLOB_UPLOAD_UNKNOWN" {
				t.Fatalf("token in another repository: %d %s (%v), want 404 BLOB_UPLOAD_UNKNOWN", r.status, r.body, err)
			}
			fxMust(t, 201, "PUT", second.URL+refused.header.Get("Location")+"&digest="+d.String(), cr(z, len(blob)), blob[z:])

			got, status, err := getBlob(first.URL + repo + "/blobs/" + d.String())
			if err != nil || status != 200 || digest.FromBytes(got) != d {
				t.Fatalf("pull: %d, %d bytes, %v; want %s", status, len(got), err, d)
			}
			// Nothing of the upload is left behind; its tokens are unknown.
			if r, err := fxDo("GET", second.URL+loc1, nil, nil); err != nil || r.status != 404 {
				t.Fatalf("status after commit: %d (%v), want 404", r.status, err)
			}
		})
	}
}

package handlers_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/inmemory"
	"github.com/registryd/registryd/handlers"
	"github.com/registryd/registryd/storage"
)

// countingDriver counts backend calls, to prove bad input is refused before any.
type countingDriver struct {
	driver.Driver
	calls atomic.Int64
}

func (c *countingDriver) Stat(ctx context.Context, p string) (driver.Info, error) {
	c.calls.Add(1)
	return c.Driver.Stat(ctx, p)
}
func (c *countingDriver) Reader(ctx context.Context, p string, o, n int64) (io.ReadCloser, error) {
	c.calls.Add(1)
	return c.Driver.Reader(ctx, p, o, n)
}
func (c *countingDriver) Put(ctx context.Context, p string, r io.Reader, n int64) error {
	c.calls.Add(1)
	return c.Driver.Put(ctx, p, r, n)
}
func (c *countingDriver) PutIf(ctx context.Context, p string, r io.Reader, n int64, v string) (string, error) {
	c.calls.Add(1)
	return c.Driver.PutIf(ctx, p, r, n, v)
}
func (c *countingDriver) Delete(ctx context.Context, p string) error {
	c.calls.Add(1)
	return c.Driver.Delete(ctx, p)
}
func (c *countingDriver) List(ctx context.Context, d, a string, l int) ([]driver.Info, error) {
	c.calls.Add(1)
	return c.Driver.List(ctx, d, a, l)
}
func (c *countingDriver) Copy(ctx context.Context, s, d string) error {
	c.calls.Add(1)
	return c.Driver.Copy(ctx, s, d)
}
func (c *countingDriver) Writer(ctx context.Context, p string, r []byte) (driver.Writer, error) {
	c.calls.Add(1)
	return c.Driver.Writer(ctx, p, r)
}

type server struct {
	*httptest.Server
	d *countingDriver
}

func newServer(t *testing.T, deletes bool) *server {
	t.Helper()
	d := &countingDriver{Driver: inmemory.New()}
	reg, err := storage.New(d, storage.Options{Secret: []byte("test-secret-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	e, err := handlers.New(handlers.Options{Registry: reg, DeleteEnabled: deletes, MaxListEntries: 3, MaxManifestBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(e)
	t.Cleanup(s.Close)
	return &server{Server: s, d: d}
}

func (s *server) do(t *testing.T, method, path string, hdr map[string]string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// pushBlob uploads b to repo (POST + PUT) and returns its digest.
func (s *server) pushBlob(t *testing.T, repo string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	resp := s.do(t, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), nil, b)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("push blob: %d", resp.StatusCode)
	}
	return d
}

// pushImage pushes a config, one layer and a manifest tagged tag; returns the manifest.
func (s *server) pushImage(t *testing.T, repo, tag string) ([]byte, digest.Digest, digest.Digest) {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := bytes.Repeat([]byte("layer-bytes "), 1000)
	cd, ld := s.pushBlob(t, repo, cfg), s.pushBlob(t, repo, layer)
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`, cd, len(cfg), ld, len(layer)))
	resp := s.do(t, "PUT", "/v2/"+repo+"/manifests/"+tag, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, m)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("push manifest: %d", resp.StatusCode)
	}
	return m, digest.FromBytes(m), ld
}

func ociCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	var env struct {
		Errors []struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &env); err != nil || len(env.Errors) != 1 || env.Errors[0].Message == "" {
		t.Errorf("body is not one OCI error: %s", b)
		return ""
	}
	return env.Errors[0].Code
}

func TestBadInputRefusedBeforeBackend(t *testing.T) {
	s := newServer(t, true)
	hex64 := strings.Repeat("a", 64)
	long := strings.Repeat("a", 256)
	manifestCT := map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
	for _, tc := range []struct {
		method, path string
		hdr          map[string]string
		body         []byte
		status       int
		code         string
	}{
		{"GET", "/v2/UPPER/tags/list", nil, nil, 400, "NAME_INVALID"},
		{"GET", "/v2/a/../b/tags/list", nil, nil, 400, "NAME_INVALID"},
		{"GET", "/v2/" + long + "/tags/list", nil, nil, 400, "NAME_INVALID"},
		{"GET", "/v2/a__-b/manifests/latest", nil, nil, 400, "NAME_INVALID"},
		{"POST", "/v2/Bad/blobs/uploads/", nil, nil, 400, "NAME_INVALID"},
		{"PUT", "/v2/a/manifests/-bad", manifestCT, []byte("{}"), 400, "TAG_INVALID"},
		{"PUT", "/v2/a/manifests/" + strings.Repeat("t", 129), manifestCT, []byte("{}"), 400, "TAG_INVALID"},
		{"GET", "/v2/a/manifests/a@b", nil, nil, 400, "TAG_INVALID"},
		{"PUT", "/v2/a/manifests/v1?tag=b@d", manifestCT, []byte("{}"), 400, "TAG_INVALID"},
		{"GET", "/v2/a/blobs/sha256:xyz", nil, nil, 400, "DIGEST_INVALID"},
		{"GET", "/v2/a/blobs/sha256:" + hex64[:63], nil, nil, 400, "DIGEST_INVALID"},
		{"GET", "/v2/a/blobs/sha256:" + strings.ToUpper(hex64), nil, nil, 400, "DIGEST_INVALID"},
		{"GET", "/v2/a/blobs/md5:" + hex64[:32], nil, nil, 400, "DIGEST_INVALID"},
		{"HEAD", "/v2/a/blobs/notadigest", nil, nil, 400, ""},
		{"GET", "/v2/a/manifests/sha256:zz", nil, nil, 400, "DIGEST_INVALID"},
		{"GET", "/v2/a/referrers/sha256:zz", nil, nil, 400, "DIGEST_INVALID"},
		{"POST", "/v2/a/blobs/uploads/?digest=sha256:bad", nil, []byte("x"), 400, "DIGEST_INVALID"},
		{"POST", "/v2/a/blobs/uploads/?mount=sha256:bad&from=b", nil, nil, 400, "DIGEST_INVALID"},
		{"POST", "/v2/a/blobs/uploads/?mount=sha256:" + hex64 + "&from=B", nil, nil, 400, "NAME_INVALID"},
		{"GET", "/v2/a/tags/list?n=abc", nil, nil, 400, "PAGINATION_NUMBER_INVALID"},
		{"GET", "/v2/a/tags/list?n=-1", nil, nil, 400, "PAGINATION_NUMBER_INVALID"},
		{"GET", "/v2/_catalog?n=1.5", nil, nil, 400, "PAGINATION_NUMBER_INVALID"},
		{"GET", "/v2/_catalog?last=UP", nil, nil, 400, "NAME_INVALID"},
		{"GET", "/v2/a/tags/list?last=-x", nil, nil, 400, "TAG_INVALID"},
		{"PUT", "/v2/a/manifests/v1", manifestCT, bytes.Repeat([]byte(" "), 4<<20+1), 413, "SIZE_INVALID"},
		{"PUT", "/v2/a/manifests/v1", manifestCT, []byte("not json"), 400, "MANIFEST_INVALID"},
		{"PUT", "/v2/a/manifests/v1", manifestCT, []byte(`{"schemaVersion":1}`), 400, "MANIFEST_INVALID"},
		{"PUT", "/v2/a/manifests/v1", map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"},
			[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a","digest":"sha256:` + hex64 + `","size":1},"layers":[]}`), 400, "MANIFEST_INVALID"},
		{"PUT", "/v2/a/manifests/v1", manifestCT,
			[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}`), 400, "MANIFEST_INVALID"},
		{"PUT", "/v2/a/manifests/v1", manifestCT,
			[]byte(`{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:nothex","size":1},"layers":[]}`), 400, "MANIFEST_INVALID"},
		{"PUT", "/v2/a/manifests/v1", map[string]string{"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
			[]byte(`{"schemaVersion":2}`), 400, "MANIFEST_INVALID"},
		{"PUT", "/v2/a/manifests/sha256:" + hex64, manifestCT,
			[]byte(`{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:` + hex64 + `","size":1},"layers":[]}`), 400, "DIGEST_INVALID"},
		{"PATCH", "/v2/a/blobs/uploads/not-a-uuid?_state=x", nil, []byte("x"), 404, "BLOB_UPLOAD_UNKNOWN"},
		{"PATCH", "/v2/a/blobs/uploads/0b5a5d9e-2f7c-4a52-9d43-3f3c1e4b2a10?_state=AAAA", nil, []byte("x"), 404, "BLOB_UPLOAD_UNKNOWN"},
		{"PUT", "/v2/a/blobs/uploads/0b5a5d9e-2f7c-4a52-9d43-3f3c1e4b2a10?digest=sha256:" + hex64, nil, nil, 404, "BLOB_UPLOAD_UNKNOWN"},
		{"GET", "/v2/a/unknown/endpoint", nil, nil, 404, "NAME_UNKNOWN"},
		{"POST", "/v2/a/manifests/v1", nil, nil, 405, "UNSUPPORTED"},
	} {
		t.Run(tc.method+" "+tc.path[:min(len(tc.path), 60)], func(t *testing.T) {
			before := s.d.calls.Load()
			resp := s.do(t, tc.method, tc.path, tc.hdr, tc.body)
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.code != "" {
				if got := ociCode(t, resp); got != tc.code {
					t.Errorf("code %q, want %q", got, tc.code)
				}
			}
			if n := s.d.calls.Load() - before; n != 0 && tc.status != 404 {
				t.Errorf("%d backend calls for a request refused as bad input", n)
			}
		})
	}
}

func TestAPICalls(t *testing.T) {
	s := newServer(t, true)
	m, md, ld := s.pushImage(t, "org/app", "v1")
	blob := bytes.Repeat([]byte("layer-bytes "), 1000)
	size := len(blob)
	etag := `"` + ld.String() + `"`
	for _, tc := range []struct {
		name         string
		method, path string
		hdr          map[string]string
		status       int
		code         string
		wantHdr      map[string]string
		wantBody     []byte
	}{
		{"ping", "GET", "/v2/", nil, 200, "", map[string]string{"Docker-Distribution-API-Version": "registry/2.0"}, []byte("{}")},
		{"blob head", "HEAD", "/v2/org/app/blobs/" + ld.String(), nil, 200, "",
			map[string]string{"Content-Length": fmt.Sprint(size), "Docker-Content-Digest": ld.String(), "ETag": etag}, nil},
		{"blob get", "GET", "/v2/org/app/blobs/" + ld.String(), nil, 200, "", map[string]string{"Content-Length": fmt.Sprint(size)}, blob},
		{"blob range", "GET", "/v2/org/app/blobs/" + ld.String(), map[string]string{"Range": "bytes=2-9"}, 206, "",
			map[string]string{"Content-Range": fmt.Sprintf("bytes 2-9/%d", size), "Content-Length": "8"}, blob[2:10]},
		{"blob open range", "GET", "/v2/org/app/blobs/" + ld.String(), map[string]string{"Range": fmt.Sprintf("bytes=%d-", size-3)}, 206, "", nil, blob[size-3:]},
		{"blob suffix range", "GET", "/v2/org/app/blobs/" + ld.String(), map[string]string{"Range": "bytes=-4"}, 206, "", nil, blob[size-4:]},
		{"blob range beyond", "GET", "/v2/org/app/blobs/" + ld.String(), map[string]string{"Range": fmt.Sprintf("bytes=%d-", size)}, 416, "RANGE_INVALID",
			map[string]string{"Content-Range": fmt.Sprintf("bytes */%d", size)}, nil},
		{"blob range reversed", "GET", "/v2/org/app/blobs/" + ld.String(), map[string]string{"Range": "bytes=9-2"}, 416, "RANGE_INVALID", nil, nil},
		{"blob range garbage", "GET", "/v2/org/app/blobs/" + ld.String(), map[string]string{"Range": "lines=1-2"}, 416, "RANGE_INVALID", nil, nil},
		{"blob not modified", "GET", "/v2/org/app/blobs/" + ld.String(), map[string]string{"If-None-Match": etag}, 304, "", nil, nil},
		{"blob other repo", "GET", "/v2/other/blobs/" + ld.String(), nil, 404, "BLOB_UNKNOWN", nil, nil},
		{"blob unknown", "GET", "/v2/org/app/blobs/" + digest.FromString("nope").String(), nil, 404, "BLOB_UNKNOWN", nil, nil},
		{"manifest by tag", "GET", "/v2/org/app/manifests/v1", nil, 200, "",
			map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Docker-Content-Digest": md.String()}, m},
		{"manifest docker-only accept", "GET", "/v2/org/app/manifests/v1",
			map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json"}, 200, "", nil, m},
		{"manifest head by digest", "HEAD", "/v2/org/app/manifests/" + md.String(), nil, 200, "",
			map[string]string{"Content-Length": fmt.Sprint(len(m)), "Docker-Content-Digest": md.String()}, nil},
		{"manifest not modified", "GET", "/v2/org/app/manifests/v1", map[string]string{"If-None-Match": `"` + md.String() + `"`}, 304, "", nil, nil},
		{"manifest unknown tag", "GET", "/v2/org/app/manifests/v2", nil, 404, "MANIFEST_UNKNOWN", nil, nil},
		{"manifest unknown tag head", "HEAD", "/v2/org/app/manifests/v2", nil, 404, "", nil, nil},
		{"tags", "GET", "/v2/org/app/tags/list", nil, 200, "", nil, []byte(`{"name":"org/app","tags":["v1"]}`)},
		{"tags n=0", "GET", "/v2/org/app/tags/list?n=0", nil, 200, "", nil, []byte(`{"name":"org/app","tags":[]}`)},
		{"tags unknown repo", "GET", "/v2/nope/tags/list", nil, 404, "NAME_UNKNOWN", nil, nil},
		{"catalog", "GET", "/v2/_catalog", nil, 200, "", nil, []byte(`{"repositories":["org/app"]}`)},
		{"referrers none", "GET", "/v2/org/app/referrers/" + md.String(), nil, 200, "",
			map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"},
			[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)},
		{"referrers filtered", "GET", "/v2/org/app/referrers/" + md.String() + "?artifactType=x/y", nil, 200, "",
			map[string]string{"OCI-Filters-Applied": "artifactType"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.do(t, tc.method, tc.path, tc.hdr, nil)
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			for k, v := range tc.wantHdr {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if tc.code != "" {
				if got := ociCode(t, resp); got != tc.code {
					t.Errorf("code %q, want %q", got, tc.code)
				}
				return
			}
			if tc.wantBody != nil {
				b, _ := io.ReadAll(resp.Body)
				if !bytes.Equal(b, tc.wantBody) {
					t.Errorf("body %q, want %q", b[:min(len(b), 200)], tc.wantBody[:min(len(tc.wantBody), 200)])
				}
			}
		})
	}
}

func TestHeadAndGetAgree(t *testing.T) {
	s := newServer(t, true)
	_, md, ld := s.pushImage(t, "a", "v1")
	for _, p := range []string{"/v2/a/manifests/v1", "/v2/a/manifests/" + md.String(), "/v2/a/blobs/" + ld.String()} {
		g := s.do(t, "GET", p, nil, nil)
		g.Body.Close()
		h := s.do(t, "HEAD", p, nil, nil)
		h.Body.Close()
		for _, k := range []string{"Content-Type", "Content-Length", "Docker-Content-Digest", "ETag"} {
			if g.Header.Get(k) != h.Header.Get(k) || g.Header.Get(k) == "" {
				t.Errorf("%s: %s GET %q HEAD %q", p, k, g.Header.Get(k), h.Header.Get(k))
			}
		}
	}
}

func TestChunkedUpload(t *testing.T) {
	s := newServer(t, true)
	blob := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	d := digest.FromBytes(blob)
	resp := s.do(t, "POST", "/v2/up/blobs/uploads/", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 202 || resp.Header.Get("Range") != "0-0" || resp.Header.Get("Docker-Upload-UUID") == "" {
		t.Fatalf("start: %d %v", resp.StatusCode, resp.Header)
	}
	loc := resp.Header.Get("Location")
	first := loc
	chunks := [][2]int{{0, 1000}, {1000, 1001}, {1001, 40000}, {40000, len(blob) - 5}}
	for _, c := range chunks {
		resp = s.do(t, "PATCH", loc, map[string]string{"Content-Range": fmt.Sprintf("%d-%d", c[0], c[1]-1)}, blob[c[0]:c[1]])
		resp.Body.Close()
		if resp.StatusCode != 202 || resp.Header.Get("Range") != fmt.Sprintf("0-%d", c[1]-1) {
			t.Fatalf("patch %v: %d range %q", c, resp.StatusCode, resp.Header.Get("Range"))
		}
		loc = resp.Header.Get("Location")
	}
	// Out-of-order chunk: 416 with the true Range, nothing written.
	resp = s.do(t, "PATCH", loc, map[string]string{"Content-Range": "5-9"}, blob[5:10])
	code := ociCode(t, resp)
	resp.Body.Close()
	if resp.StatusCode != 416 || resp.Header.Get("Range") != fmt.Sprintf("0-%d", len(blob)-6) || code != "BLOB_UPLOAD_INVALID" {
		t.Fatalf("out of order: %d range %q code %s", resp.StatusCode, resp.Header.Get("Range"), code)
	}
	// A replayed (stale) token is refused, and does not disturb the upload.
	resp = s.do(t, "PATCH", first, nil, []byte("junk"))
	resp.Body.Close()
	if resp.StatusCode != 416 {
		t.Fatalf("stale token: %d", resp.StatusCode)
	}
	// Status.
	resp = s.do(t, "GET", loc, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Range") != fmt.Sprintf("0-%d", len(blob)-6) {
		t.Fatalf("status: %d %q", resp.StatusCode, resp.Header.Get("Range"))
	}
	// Wrong digest: 400 and discarded.
	resp = s.do(t, "PUT", loc+"&digest="+digest.FromString("x").String(), nil, blob[len(blob)-5:])
	code = ociCode(t, resp)
	resp.Body.Close()
	if resp.StatusCode != 400 || code != "DIGEST_INVALID" {
		t.Fatalf("bad digest: %d %s", resp.StatusCode, code)
	}
	resp = s.do(t, "GET", "/v2/up/blobs/"+digest.FromString("x").String(), nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("blob of a failed PUT visible: %d", resp.StatusCode)
	}
	resp = s.do(t, "PUT", loc+"&digest="+d.String(), nil, blob[len(blob)-5:])
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("PUT after a digest mismatch discarded the upload: want 404, got %d", resp.StatusCode)
	}
}

func TestChunkedUploadCompletes(t *testing.T) {
	s := newServer(t, true)
	blob := bytes.Repeat([]byte("xyz"), 100000)
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	resp := s.do(t, "POST", "/v2/up/blobs/uploads/", nil, nil)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	resp = s.do(t, "PATCH", loc, nil, blob[:123456]) // streamed, no Content-Range
	resp.Body.Close()
	loc = resp.Header.Get("Location")
	resp = s.do(t, "PUT", loc+"&digest="+d, map[string]string{"Content-Range": fmt.Sprintf("123456-%d", len(blob)-1)}, blob[123456:])
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("Docker-Content-Digest") != d || resp.Header.Get("Location") != "/v2/up/blobs/"+d {
		t.Fatalf("finish: %d %v", resp.StatusCode, resp.Header)
	}
	// The finished upload's token is dead.
	for _, m := range []string{"PATCH", "GET", "PUT"} {
		resp = s.do(t, m, loc+"&digest="+d, nil, []byte("more"))
		code := ociCode(t, resp)
		resp.Body.Close()
		if resp.StatusCode != 404 || code != "BLOB_UPLOAD_UNKNOWN" {
			t.Errorf("%s after commit: %d %s", m, resp.StatusCode, code)
		}
	}
	resp = s.do(t, "GET", "/v2/up/blobs/"+d, nil, nil)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, blob) {
		t.Fatalf("blob differs")
	}
	// Cancel: then unknown.
	resp = s.do(t, "POST", "/v2/up/blobs/uploads/", nil, nil)
	resp.Body.Close()
	loc = resp.Header.Get("Location")
	resp = s.do(t, "DELETE", loc, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("cancel: %d", resp.StatusCode)
	}
	resp = s.do(t, "GET", loc, nil, nil)
	code := ociCode(t, resp)
	resp.Body.Close()
	if resp.StatusCode != 404 || code != "BLOB_UPLOAD_UNKNOWN" {
		t.Fatalf("status after cancel: %d %s", resp.StatusCode, code)
	}
	// A token signed for one repository is refused in another.
	resp = s.do(t, "POST", "/v2/up/blobs/uploads/", nil, nil)
	resp.Body.Close()
	other := strings.Replace(resp.Header.Get("Location"), "/v2/up/", "/v2/other/", 1)
	resp = s.do(t, "PATCH", other, nil, []byte("x"))
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("cross-repository token: %d", resp.StatusCode)
	}
}

func TestManifestReferences(t *testing.T) {
	s := newServer(t, true)
	_, md, _ := s.pushImage(t, "r", "v1")
	hex := strings.Repeat("b", 64)
	ct := map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
	missing := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + hex + `","size":2},"layers":[]}`)
	resp := s.do(t, "PUT", "/v2/r/manifests/bad", ct, missing)
	if code := ociCode(t, resp); resp.StatusCode != 400 || code != "MANIFEST_BLOB_UNKNOWN" {
		t.Errorf("missing config: %d %s", resp.StatusCode, code)
	}
	resp.Body.Close()
	idx := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + md.String() + `","size":1},` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + hex + `","size":1}]}`)
	resp = s.do(t, "PUT", "/v2/r/manifests/idx", map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}, idx)
	if code := ociCode(t, resp); resp.StatusCode != 400 || code != "MANIFEST_UNKNOWN" {
		t.Errorf("missing child: %d %s", resp.StatusCode, code)
	}
	resp.Body.Close()
	// Deleting a manifest removes the tags pointing at it.
	resp = s.do(t, "DELETE", "/v2/r/manifests/"+md.String(), nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	for _, p := range []string{"/v2/r/manifests/v1", "/v2/r/manifests/" + md.String()} {
		resp = s.do(t, "GET", p, nil, nil)
		if code := ociCode(t, resp); resp.StatusCode != 404 || code != "MANIFEST_UNKNOWN" {
			t.Errorf("GET %s after delete: %d %s", p, resp.StatusCode, code)
		}
		resp.Body.Close()
	}
}

func TestPagination(t *testing.T) {
	s := newServer(t, true)
	for _, tag := range []string{"a", "b", "c", "d", "e"} {
		s.pushImage(t, "p", tag)
	}
	resp := s.do(t, "GET", "/v2/p/tags/list?n=2", nil, nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(bytes.TrimSpace(b)) != `{"name":"p","tags":["a","b"]}` || resp.Header.Get("Link") != `</v2/p/tags/list?last=b&n=2>; rel="next"` {
		t.Fatalf("page 1: %s link %q", b, resp.Header.Get("Link"))
	}
	resp = s.do(t, "GET", "/v2/p/tags/list?n=2&last=d", nil, nil)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(bytes.TrimSpace(b)) != `{"name":"p","tags":["e"]}` || resp.Header.Get("Link") != "" {
		t.Fatalf("last page: %s link %q", b, resp.Header.Get("Link"))
	}
	// n above the cap (3) is capped, with a Link.
	resp = s.do(t, "GET", "/v2/p/tags/list?n=100", nil, nil)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(bytes.TrimSpace(b)) != `{"name":"p","tags":["a","b","c"]}` || resp.Header.Get("Link") == "" {
		t.Fatalf("capped: %s link %q", b, resp.Header.Get("Link"))
	}
}

func TestDeletesDisabled(t *testing.T) {
	s := newServer(t, false)
	_, md, ld := s.pushImage(t, "d", "v1")
	for _, p := range []string{"/v2/d/manifests/v1", "/v2/d/manifests/" + md.String(), "/v2/d/blobs/" + ld.String()} {
		resp := s.do(t, "DELETE", p, nil, nil)
		if code := ociCode(t, resp); resp.StatusCode != 405 || code != "UNSUPPORTED" {
			t.Errorf("DELETE %s: %d %s", p, resp.StatusCode, code)
		}
		resp.Body.Close()
	}
	resp := s.do(t, "GET", "/v2/d/manifests/v1", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("manifest gone after refused delete: %d", resp.StatusCode)
	}
}

package handlers_test

// Handler behaviour under backend faults: every route answers 500 UNKNOWN (never 404, never
// 2xx, never the cause's text) while the backend fails, and nothing stored before changes;
// blob streams that break mid-body are resumed or cut short, never served wrong; readiness
// follows the backend's health.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/fault"
	"github.com/registryd/registryd/driver/inmemory"
	"github.com/registryd/registryd/handlers"
	"github.com/registryd/registryd/storage"
)

const (
	fxRepo    = "org/app"
	fxTag     = "v1"
	ociManCT  = "application/vnd.oci.image.manifest.v1+json"
	fxTimeout = 20 * time.Second
)

// faultEnv is the real handler stack over a fault-injecting in-memory backend, seeded with
// a repository holding a config and a layer blob, a tagged manifest, a referrer of it and an
// upload in progress.
type faultEnv struct {
	url    string
	mem    *inmemory.Driver
	f      *fault.Driver
	client *http.Client

	layer          []byte
	layerDigest    digest.Digest
	manifest       []byte
	manifestDigest digest.Digest
	referrerDigest digest.Digest
	// The upload in progress holds upload[:uploadAt]; its Location is uploadLoc.
	upload    []byte
	uploadAt  int
	uploadLoc string
}

type fxOptions struct {
	retry       bool // put driver.WithRetry (tiny delays) between storage and the faults
	readRetries int  // storage.Options.ReadRetries (0: default)
	ops         bool // serve /healthz and /readyz
}

func newFaultEnv(t *testing.T, o fxOptions) *faultEnv {
	t.Helper()
	mem := inmemory.New()
	f := fault.New(mem)
	var d driver.Driver = f
	if o.retry {
		d = driver.WithRetry(f, driver.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond})
	}
	reg, err := storage.New(d, storage.Options{Secret: []byte("fault-test-secret-0123456789"), ReadRetries: o.readRetries})
	if err != nil {
		t.Fatal(err)
	}
	// Readiness re-checks the backend on every probe here (no caching interval).
	e, err := handlers.New(handlers.Options{Registry: reg, DeleteEnabled: true, ServeOps: o.ops,
		Readiness: handlers.NewReadiness(reg.Ping, time.Nanosecond, nil)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	env := &faultEnv{url: srv.URL, mem: mem, f: f, client: &http.Client{Timeout: fxTimeout}}
	env.seed(t)
	return env
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

type fxResp struct {
	status int
	header http.Header
	body   []byte
	err    error // reading the body failed (a response cut short)
}

func (e *faultEnv) do(t *testing.T, method, path string, hdr map[string]string, body []byte) fxResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	return fxResp{status: resp.StatusCode, header: resp.Header, body: b, err: rerr}
}

// must performs a request that has to succeed with status want.
func (e *faultEnv) must(t *testing.T, want int, method, path string, hdr map[string]string, body []byte) fxResp {
	t.Helper()
	r := e.do(t, method, path, hdr, body)
	if r.status != want || r.err != nil {
		t.Fatalf("%s %s: %d (%v) %s, want %d", method, path, r.status, r.err, r.body, want)
	}
	return r
}

func (e *faultEnv) pushBlob(t *testing.T, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	e.must(t, 201, "POST", "/v2/"+fxRepo+"/blobs/uploads/?digest="+d.String(), nil, b)
	return d
}

func (e *faultEnv) seed(t *testing.T) {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	cd := e.pushBlob(t, cfg)
	e.layer = randomBytes(1, 300<<10)
	e.layerDigest = e.pushBlob(t, e.layer)
	empty := e.pushBlob(t, []byte("{}"))
	e.manifest = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		ociManCT, cd, len(cfg), e.layerDigest, len(e.layer)))
	e.manifestDigest = digest.FromBytes(e.manifest)
	e.must(t, 201, "PUT", "/v2/"+fxRepo+"/manifests/"+fxTag, map[string]string{"Content-Type": ociManCT}, e.manifest)
	ref := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","artifactType":"application/x-test",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],`+
		`"subject":{"mediaType":"%s","digest":"%s","size":%d}}`, ociManCT, empty, ociManCT, e.manifestDigest, len(e.manifest)))
	e.referrerDigest = digest.FromBytes(ref)
	e.must(t, 201, "PUT", "/v2/"+fxRepo+"/manifests/"+e.referrerDigest.String(), map[string]string{"Content-Type": ociManCT}, ref)
	e.upload = randomBytes(2, 100<<10)
	e.uploadAt = 40 << 10
	r := e.must(t, 202, "POST", "/v2/"+fxRepo+"/blobs/uploads/", nil, nil)
	r = e.must(t, 202, "PATCH", r.header.Get("Location"), map[string]string{"Content-Range": fmt.Sprintf("0-%d", e.uploadAt-1)}, e.upload[:e.uploadAt])
	e.uploadLoc = r.header.Get("Location")
}

// verifySeed checks that everything seeded is unchanged, then that the upload in progress
// still resumes and completes from its last acknowledged offset.
func (e *faultEnv) verifySeed(t *testing.T) {
	t.Helper()
	blob := "/v2/" + fxRepo + "/blobs/" + e.layerDigest.String()
	if r := e.must(t, 200, "GET", blob, nil, nil); !bytes.Equal(r.body, e.layer) {
		t.Fatalf("layer blob changed: %d bytes", len(r.body))
	}
	for _, ref := range []string{fxTag, e.manifestDigest.String()} {
		r := e.must(t, 200, "GET", "/v2/"+fxRepo+"/manifests/"+ref, nil, nil)
		if !bytes.Equal(r.body, e.manifest) || r.header.Get("Docker-Content-Digest") != e.manifestDigest.String() {
			t.Fatalf("manifest %s changed: %s", ref, r.body)
		}
	}
	r := e.must(t, 200, "GET", "/v2/"+fxRepo+"/tags/list", nil, nil)
	var tags struct{ Tags []string }
	if err := json.Unmarshal(r.body, &tags); err != nil || len(tags.Tags) == 0 || tags.Tags[0] != fxTag {
		t.Fatalf("tags changed: %s", r.body)
	}
	for _, tag := range tags.Tags {
		// Every listed tag resolves (a failed PUT of a new tag may or may not have made it).
		e.must(t, 200, "GET", "/v2/"+fxRepo+"/manifests/"+tag, nil, nil)
	}
	if r := e.must(t, 200, "GET", "/v2/"+fxRepo+"/referrers/"+e.manifestDigest.String(), nil, nil); !strings.Contains(string(r.body), e.referrerDigest.String()) {
		t.Fatalf("referrer lost: %s", r.body)
	}
	if r := e.must(t, 200, "GET", "/v2/_catalog", nil, nil); !strings.Contains(string(r.body), fxRepo) {
		t.Fatalf("catalog lost the repository: %s", r.body)
	}
	r = e.must(t, 204, "GET", e.uploadLoc, nil, nil)
	if got, want := r.header.Get("Range"), fmt.Sprintf("0-%d", e.uploadAt-1); got != want {
		t.Fatalf("upload Range %q, want %q", got, want)
	}
	r = e.must(t, 202, "PATCH", e.uploadLoc, map[string]string{"Content-Range": fmt.Sprintf("%d-%d", e.uploadAt, len(e.upload)-1)}, e.upload[e.uploadAt:])
	d := digest.FromBytes(e.upload)
	e.must(t, 201, "PUT", r.header.Get("Location")+"&digest="+d.String(), nil, nil)
	if r := e.must(t, 200, "GET", "/v2/"+fxRepo+"/blobs/"+d.String(), nil, nil); !bytes.Equal(r.body, e.upload) {
		t.Fatal("resumed upload completed with different bytes")
	}
}

type fxRoute struct {
	name         string
	method       string
	path         func(e *faultEnv) string
	hdr          map[string]string
	body         func(e *faultEnv) []byte
	changesState bool // a delete: the seed may legitimately be partly gone after a fault
}

var fxRoutes = []fxRoute{
	{"blob HEAD", "HEAD", func(e *faultEnv) string { return "/v2/" + fxRepo + "/blobs/" + e.layerDigest.String() }, nil, nil, false},
	{"blob GET", "GET", func(e *faultEnv) string { return "/v2/" + fxRepo + "/blobs/" + e.layerDigest.String() }, nil, nil, false},
	{"blob GET range", "GET", func(e *faultEnv) string { return "/v2/" + fxRepo + "/blobs/" + e.layerDigest.String() },
		map[string]string{"Range": "bytes=10-99"}, nil, false},
	{"blob DELETE", "DELETE", func(e *faultEnv) string { return "/v2/" + fxRepo + "/blobs/" + e.layerDigest.String() }, nil, nil, true},
	{"upload POST", "POST", func(e *faultEnv) string { return "/v2/" + fxRepo + "/blobs/uploads/" }, nil, nil, false},
	{"upload POST monolithic", "POST", func(e *faultEnv) string {
		return "/v2/" + fxRepo + "/blobs/uploads/?digest=" + digest.FromString("monolithic").String()
	}, nil, func(*faultEnv) []byte { return []byte("monolithic") }, false},
	{"upload POST mount", "POST", func(e *faultEnv) string {
		return "/v2/org/other/blobs/uploads/?mount=" + e.layerDigest.String() + "&from=" + fxRepo
	}, nil, nil, false},
	{"upload PATCH", "PATCH", func(e *faultEnv) string { return e.uploadLoc }, nil, func(e *faultEnv) []byte { return e.upload[e.uploadAt:] }, false},
	{"upload PUT", "PUT", func(e *faultEnv) string { return e.uploadLoc + "&digest=" + digest.FromBytes(e.upload).String() },
		nil, func(e *faultEnv) []byte { return e.upload[e.uploadAt:] }, false},
	{"upload GET", "GET", func(e *faultEnv) string { return e.uploadLoc }, nil, nil, false},
	{"upload DELETE", "DELETE", func(e *faultEnv) string { return e.uploadLoc }, nil, nil, true},
	{"manifest HEAD tag", "HEAD", func(e *faultEnv) string { return "/v2/" + fxRepo + "/manifests/" + fxTag }, nil, nil, false},
	{"manifest GET tag", "GET", func(e *faultEnv) string { return "/v2/" + fxRepo + "/manifests/" + fxTag }, nil, nil, false},
	{"manifest HEAD digest", "HEAD", func(e *faultEnv) string { return "/v2/" + fxRepo + "/manifests/" + e.manifestDigest.String() }, nil, nil, false},
	{"manifest GET digest", "GET", func(e *faultEnv) string { return "/v2/" + fxRepo + "/manifests/" + e.manifestDigest.String() }, nil, nil, false},
	{"manifest PUT", "PUT", func(e *faultEnv) string { return "/v2/" + fxRepo + "/manifests/v2" },
		map[string]string{"Content-Type": ociManCT}, func(e *faultEnv) []byte { return e.manifest }, false},
	{"manifest DELETE digest", "DELETE", func(e *faultEnv) string { return "/v2/" + fxRepo + "/manifests/" + e.manifestDigest.String() }, nil, nil, true},
	{"manifest DELETE tag", "DELETE", func(e *faultEnv) string { return "/v2/" + fxRepo + "/manifests/" + fxTag }, nil, nil, true},
	{"tags list", "GET", func(e *faultEnv) string { return "/v2/" + fxRepo + "/tags/list" }, nil, nil, false},
	{"catalog", "GET", func(e *faultEnv) string { return "/v2/_catalog" }, nil, nil, false},
	{"referrers", "GET", func(e *faultEnv) string { return "/v2/" + fxRepo + "/referrers/" + e.manifestDigest.String() }, nil, nil, false},
}

func (rt fxRoute) run(t *testing.T, e *faultEnv) fxResp {
	t.Helper()
	var body []byte
	if rt.body != nil {
		body = rt.body(e)
	}
	return e.do(t, rt.method, rt.path(e), rt.hdr, body)
}

// leaks lists texts of the injected causes that must never reach a client.
func leaks(class error) []string {
	return []string{fault.Marker, "simulated", class.Error(), "docker/registry", "_uploads", "_manifests", "deadline"}
}

// assertUnknown500 checks the response is 500 with the OCI UNKNOWN envelope (HEAD: no body)
// and shows nothing of the cause.
func assertUnknown500(t *testing.T, method string, r fxResp, class error) {
	t.Helper()
	if r.status != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500 (body %s)", r.status, r.body)
	}
	if method == "HEAD" {
		if len(r.body) != 0 {
			t.Fatalf("HEAD with a body: %q", r.body)
		}
	} else {
		var env struct {
			Errors []struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"errors"`
		}
		if err := json.Unmarshal(r.body, &env); err != nil || len(env.Errors) != 1 || env.Errors[0].Code != "UNKNOWN" || env.Errors[0].Message == "" {
			t.Fatalf("body is not one OCI UNKNOWN error: %s", r.body)
		}
	}
	var all strings.Builder
	all.Write(r.body)
	for k, vs := range r.header {
		all.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
	}
	for _, l := range leaks(class) {
		if strings.Contains(strings.ToLower(all.String()), strings.ToLower(l)) {
			t.Fatalf("response leaks %q:\n%s", l, all.String())
		}
	}
}

// TestFaultEveryRouteEveryClass: with every backend call failing with a class, every
// route answers 500 UNKNOWN without leaking the cause, with or without driver retries;
// once the backend recovers everything seeded is intact and the upload resumes.
func TestFaultEveryRouteEveryClass(t *testing.T) {
	for _, retry := range []bool{false, true} {
		for _, c := range fault.Classes() {
			for _, rt := range fxRoutes {
				t.Run(fmt.Sprintf("retry=%v/%s/%s", retry, c.Name, rt.name), func(t *testing.T) {
					e := newFaultEnv(t, fxOptions{retry: retry})
					e.f.ResetCounts()
					e.f.Fail(c.Err)
					r := rt.run(t, e)
					if e.f.Injected() == 0 {
						t.Fatal("the route made no backend call")
					}
					assertUnknown500(t, rt.method, r, c.Err)
					e.f.Clear()
					e.verifySeed(t)
				})
			}
		}
	}
}

// TestFaultNthCallSweep fails the n-th backend call of a request, for every n the request
// makes, on every route that stores nothing new or adds to the repository: the response is
// a success or 500, never a 4xx, and afterwards everything seeded is intact and the upload
// in progress still resumes (a retried request finds what the failed one left).
func TestFaultNthCallSweep(t *testing.T) {
	for _, rt := range fxRoutes {
		if rt.changesState {
			continue
		}
		t.Run(rt.name, func(t *testing.T) {
			probe := newFaultEnv(t, fxOptions{readRetries: -1})
			probe.f.ResetCounts()
			if r := rt.run(t, probe); r.status >= 300 {
				t.Fatalf("without faults: %d %s", r.status, r.body)
			}
			calls := 0
			for _, m := range fault.Methods() {
				calls += probe.f.Calls(m)
			}
			for n := 1; n <= calls; n++ {
				t.Run(fmt.Sprint("call", n), func(t *testing.T) {
					e := newFaultEnv(t, fxOptions{readRetries: -1})
					e.f.Add(fault.Rule{Nth: n, Err: driver.ErrUnavailable})
					r := rt.run(t, e)
					if r.status != 500 && (r.status < 200 || r.status > 299) {
						t.Fatalf("status %d, want a success or 500: %s", r.status, r.body)
					}
					if r.status == 500 && rt.method != "HEAD" && !strings.Contains(string(r.body), `"UNKNOWN"`) {
						t.Fatalf("500 without UNKNOWN: %s", r.body)
					}
					e.f.Clear()
					if rt.name == "upload PUT" || rt.name == "upload PATCH" {
						// The client retries a failed request with the same Location; then
						// the upload completes with the right bytes.
						if r.status == 500 {
							r = rt.run(t, e)
							if r.status < 200 || r.status > 299 {
								t.Fatalf("retried %s after a failed one: %d %s", rt.method, r.status, r.body)
							}
						}
						d := digest.FromBytes(e.upload)
						if rt.method == "PATCH" {
							e.must(t, 201, "PUT", r.header.Get("Location")+"&digest="+d.String(), nil, nil)
						}
						if got := e.must(t, 200, "GET", "/v2/"+fxRepo+"/blobs/"+d.String(), nil, nil); !bytes.Equal(got.body, e.upload) {
							t.Fatal("upload completed with different bytes")
						}
						return
					}
					e.verifySeed(t)
				})
			}
		})
	}
}

func blobDataPath(d digest.Digest) string {
	return "docker/registry/v2/blobs/" + d.Algorithm().String() + "/" + d.Encoded()[:2] + "/" + d.Encoded() + "/data"
}

// TestFaultBlobStreamResumes: a backend stream that breaks mid-body once or twice is
// resumed with ranged reads; the client gets the whole blob (or range) and nothing else.
func TestFaultBlobStreamResumes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		breaks int
		err    error
		rng    string
	}{
		{"once unexpected EOF", 1, nil, ""},
		{"twice unavailable", 2, driver.ErrUnavailable, ""},
		{"three times throttled", 3, driver.ErrThrottled, ""},
		{"range twice", 2, nil, "bytes=1000-250000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFaultEnv(t, fxOptions{})
			e.f.ResetCounts()
			e.f.Add(fault.Rule{Methods: []string{fault.Reader}, Glob: blobDataPath(e.layerDigest),
				BreakStream: true, BreakAfter: 50 << 10, Err: tc.err, Times: tc.breaks})
			var hdr map[string]string
			want, status := e.layer, 200
			if tc.rng != "" {
				hdr, want, status = map[string]string{"Range": tc.rng}, e.layer[1000:250001], 206
			}
			r := e.do(t, "GET", "/v2/"+fxRepo+"/blobs/"+e.layerDigest.String(), hdr, nil)
			if r.status != status || r.err != nil || !bytes.Equal(r.body, want) {
				t.Fatalf("status %d, %d bytes (want %d), read error %v", r.status, len(r.body), len(want), r.err)
			}
			if n := e.f.Calls(fault.Reader); n != tc.breaks+1 {
				t.Fatalf("%d backend reads, want %d (one per break plus the last)", n, tc.breaks+1)
			}
		})
	}
}

// TestFaultBlobStreamGivesUp: when the stream keeps breaking without progress beyond the
// retry budget, the response is cut short: the client sees an error, never a complete 200.
func TestFaultBlobStreamGivesUp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		again fault.Rule // what happens to every reopen after the first break
	}{
		{"reopened streams break at once", fault.Rule{BreakStream: true, BreakAfter: 0, After: 1}},
		{"reopen fails unavailable", fault.Rule{Err: driver.ErrUnavailable, After: 1}},
		{"reopen fails permission", fault.Rule{Err: driver.ErrPermission, After: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFaultEnv(t, fxOptions{readRetries: 2})
			glob := blobDataPath(e.layerDigest)
			e.f.Add(fault.Rule{Methods: []string{fault.Reader}, Glob: glob, BreakStream: true, BreakAfter: 100 << 10, Nth: 1})
			again := tc.again
			again.Methods, again.Glob = []string{fault.Reader}, glob
			e.f.Add(again)
			r := e.do(t, "GET", "/v2/"+fxRepo+"/blobs/"+e.layerDigest.String(), nil, nil)
			if r.err == nil || len(r.body) >= len(e.layer) {
				t.Fatalf("status %d with %d of %d bytes and no error: a broken stream looked complete", r.status, len(r.body), len(e.layer))
			}
			if !errors.Is(r.err, io.ErrUnexpectedEOF) {
				t.Fatalf("client error %v, want unexpected EOF", r.err)
			}
			if !bytes.Equal(r.body, e.layer[:len(r.body)]) {
				t.Fatal("the bytes sent before the cut are wrong")
			}
			e.f.Clear()
			if r := e.must(t, 200, "GET", "/v2/"+fxRepo+"/blobs/"+e.layerDigest.String(), nil, nil); !bytes.Equal(r.body, e.layer) {
				t.Fatal("blob differs after recovery")
			}
		})
	}
}

// TestFaultCorruptBlobNeverServed: stored bytes altered behind the registry's back are
// never served as a complete 200 (the last byte is withheld on a digest mismatch), and a
// corrupt manifest is a 500.
func TestFaultCorruptBlobNeverServed(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"one bit flipped", func(b []byte) []byte { c := bytes.Clone(b); c[len(c)/2] ^= 1; return c }},
		{"last byte changed", func(b []byte) []byte { c := bytes.Clone(b); c[len(c)-1]++; return c }},
		{"truncated", func(b []byte) []byte { return bytes.Clone(b[:len(b)-100]) }},
		{"extended", func(b []byte) []byte { return append(bytes.Clone(b), "trailing"...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFaultEnv(t, fxOptions{})
			bad := tc.mutate(e.layer)
			if err := e.mem.Put(ctx, blobDataPath(e.layerDigest), bytes.NewReader(bad), int64(len(bad))); err != nil {
				t.Fatal(err)
			}
			r := e.do(t, "GET", "/v2/"+fxRepo+"/blobs/"+e.layerDigest.String(), nil, nil)
			if r.status == 200 && r.err == nil {
				t.Fatalf("corrupt blob served as a complete 200 (%d bytes)", len(r.body))
			}
			if digest.FromBytes(r.body) == e.layerDigest {
				t.Fatal("impossible: corrupt bytes hash to the digest")
			}
			if len(r.body) >= len(bad) {
				t.Fatalf("all %d corrupt bytes sent", len(r.body))
			}
			mbad := tc.mutate(e.manifest)
			if err := e.mem.Put(ctx, blobDataPath(e.manifestDigest), bytes.NewReader(mbad), int64(len(mbad))); err != nil {
				t.Fatal(err)
			}
			for _, m := range []string{"GET", "HEAD"} {
				r := e.do(t, m, "/v2/"+fxRepo+"/manifests/"+fxTag, nil, nil)
				if r.status != 500 || bytes.Contains(r.body, mbad) {
					t.Fatalf("%s corrupt manifest: %d %s", m, r.status, r.body)
				}
			}
		})
	}
}

// TestFaultReadiness: /readyz fails while the backend is unavailable, misconfigured,
// denies access or times out, and is ready when the probe answers (NotFound included);
// /healthz stays up throughout.
func TestFaultReadiness(t *testing.T) {
	e := newFaultEnv(t, fxOptions{ops: true})
	for _, tc := range []struct {
		name  string
		err   error
		ready bool
	}{
		{"healthy", nil, true},
		{"unavailable", driver.ErrUnavailable, false},
		{"misconfigured", driver.ErrMisconfigured, false},
		{"permission", driver.ErrPermission, false},
		{"throttled", driver.ErrThrottled, false},
		{"deadline", context.DeadlineExceeded, false},
		{"probe not found", driver.ErrNotFound, true},
		{"recovered", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.f.Clear()
			if tc.err != nil {
				e.f.Fail(tc.err)
			}
			want := 200
			if !tc.ready {
				want = 503
			}
			r := e.do(t, "GET", "/readyz", nil, nil)
			if r.status != want {
				t.Fatalf("/readyz %d, want %d", r.status, want)
			}
			for _, l := range []string{fault.Marker, "docker/registry"} {
				if bytes.Contains(r.body, []byte(l)) {
					t.Fatalf("/readyz leaks %q: %s", l, r.body)
				}
			}
			if r := e.do(t, "GET", "/healthz", nil, nil); r.status != 200 {
				t.Fatalf("/healthz %d while the backend is %s", r.status, tc.name)
			}
		})
	}
	e.f.Clear()
}

package handlers_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver/inmemory"
	"github.com/registryd/registryd/handlers"
	"github.com/registryd/registryd/storage"
)

// TestLocationHeaders walks every response that carries a Location (upload start, chunk,
// out-of-order chunk, upload status, completion, monolithic upload, mount, manifest push)
// under each way of building it, and checks the origin each Location starts with. The
// rest of each Location is followed against the test server, so it must also be right.
func TestLocationHeaders(t *testing.T) {
	base, _ := url.Parse("https://registry.example.com")
	for _, tc := range []struct {
		name     string
		absolute bool
		host     *url.URL
		tls      bool
		header   map[string]string
		// want is the expected origin; "SELF" stands for the test server's host:port.
		want string
	}{
		{name: "relative by default", want: ""},
		{name: "relative ignores forwarding headers", header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "r.example.com"}, want: ""},
		{name: "http.host", absolute: true, host: base, want: "https://registry.example.com"},
		{name: "http.host wins over forwarding headers", absolute: true, host: base,
			header: map[string]string{"X-Forwarded-Proto": "http", "X-Forwarded-Host": "other.example.com"}, want: "https://registry.example.com"},
		{name: "request host and scheme", absolute: true, want: "http://SELF"},
		{name: "request over TLS", absolute: true, tls: true, want: "https://SELF"},
		{name: "forwarded proto and host", absolute: true,
			header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "r.example.com:8443"}, want: "https://r.example.com:8443"},
		{name: "first entry of forwarded lists", absolute: true,
			header: map[string]string{"X-Forwarded-Proto": "HTTPS, http", "X-Forwarded-Host": "r.example.com, ingress.internal"}, want: "https://r.example.com"},
		{name: "forwarded proto only", absolute: true, header: map[string]string{"X-Forwarded-Proto": "https"}, want: "https://SELF"},
		{name: "forwarded host only, TLS", absolute: true, tls: true, header: map[string]string{"X-Forwarded-Host": "r.example.com"}, want: "https://r.example.com"},
		{name: "bad forwarded values ignored", absolute: true,
			header: map[string]string{"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "evil.example.com/x?y="}, want: "http://SELF"},
		{name: "IPv6 forwarded host", absolute: true,
			header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "[2001:db8::1]:5000"}, want: "https://[2001:db8::1]:5000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := storage.New(inmemory.New(), storage.Options{Secret: []byte("location-test-secret-0123")})
			if err != nil {
				t.Fatal(err)
			}
			e, err := handlers.New(handlers.Options{Registry: reg, AbsoluteURLs: tc.absolute, Host: tc.host})
			if err != nil {
				t.Fatal(err)
			}
			var srv *httptest.Server
			if tc.tls {
				srv = httptest.NewTLSServer(e)
			} else {
				srv = httptest.NewServer(e)
			}
			t.Cleanup(srv.Close)
			origin := strings.Replace(tc.want, "SELF", strings.TrimPrefix(strings.TrimPrefix(srv.URL, "https://"), "http://"), 1)
			lc := &locClient{t: t, srv: srv, header: tc.header, origin: origin}

			layer := bytes.Repeat([]byte("location "), 3000)
			ld := digest.FromBytes(layer)
			loc := lc.call(202, "POST", "/v2/loc/blobs/uploads/", nil, nil)
			lc.wantPrefix(loc, "/v2/loc/blobs/uploads/")
			loc = lc.call(202, "PATCH", loc, map[string]string{"Content-Range": "0-9999"}, layer[:10000])
			lc.wantPrefix(loc, "/v2/loc/blobs/uploads/")
			// Out of order: 416 with the Location to resume from.
			loc416 := lc.call(416, "PATCH", loc, map[string]string{"Content-Range": "5-9"}, layer[5:10])
			lc.wantPrefix(loc416, "/v2/loc/blobs/uploads/")
			lc.wantPrefix(lc.call(204, "GET", loc, nil, nil), "/v2/loc/blobs/uploads/")
			done := lc.call(201, "PUT", loc+"&digest="+ld.String(), nil, layer[10000:])
			if done != "/v2/loc/blobs/"+ld.String() {
				t.Errorf("completed upload: Location %q, want %s/v2/loc/blobs/%s", lc.raw, origin, ld)
			}
			cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
			cd := digest.FromBytes(cfg)
			if got := lc.call(201, "POST", "/v2/loc/blobs/uploads/?digest="+cd.String(), nil, cfg); got != "/v2/loc/blobs/"+cd.String() {
				t.Errorf("monolithic upload: Location %q", lc.raw)
			}
			if got := lc.call(201, "POST", "/v2/other/blobs/uploads/?mount="+ld.String()+"&from=loc", nil, nil); got != "/v2/other/blobs/"+ld.String() {
				t.Errorf("mount: Location %q", lc.raw)
			}
			m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
				`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
				`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`, cd, len(cfg), ld, len(layer)))
			md := digest.FromBytes(m)
			if got := lc.call(201, "PUT", "/v2/loc/manifests/v1", map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, m); got != "/v2/loc/manifests/"+md.String() {
				t.Errorf("manifest: Location %q", lc.raw)
			}
			// The blob Location serves the blob.
			lc.call(200, "GET", "/v2/loc/blobs/"+ld.String(), nil, nil)
		})
	}
}

// locClient sends requests with fixed extra headers and checks that every Location starts
// with the expected origin.
type locClient struct {
	t      *testing.T
	srv    *httptest.Server
	header map[string]string
	origin string
	raw    string // the last Location as received
}

// call sends a request to path (a Location with its origin stripped) and returns the
// response's Location with the expected origin stripped ("" when there is none).
func (c *locClient) call(want int, method, path string, hdr map[string]string, body []byte) string {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	c.raw = resp.Header.Get("Location")
	if c.raw == "" {
		return ""
	}
	rest, ok := strings.CutPrefix(c.raw, c.origin)
	if !ok || !strings.HasPrefix(rest, "/") {
		c.t.Fatalf("%s %s: Location %q, want it to start with %q followed by a path", method, path, c.raw, c.origin+"/")
	}
	return rest
}

func (c *locClient) wantPrefix(loc, prefix string) {
	c.t.Helper()
	if !strings.HasPrefix(loc, prefix) || !strings.Contains(loc, "?_state=") {
		c.t.Errorf("upload Location %q, want %s%s<id>?_state=…", c.raw, c.origin, prefix)
	}
}

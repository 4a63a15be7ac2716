package handlers_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver/inmemory"
	"github.com/registryd/registryd/handlers"
	"github.com/registryd/registryd/storage"
)

// TestPrefix: with Options.Prefix (http.prefix) the API answers under the prefix, its
// Location and Link headers carry it, and following them completes an upload; the root
// still answers.
func TestPrefix(t *testing.T) {
	reg, err := storage.New(inmemory.New(), storage.Options{Secret: []byte("prefix-test-secret-0123")})
	if err != nil {
		t.Fatal(err)
	}
	e, err := handlers.New(handlers.Options{Registry: reg, Prefix: "/my/registry", MaxListEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	defer srv.Close()
	do := func(method, path string, body []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, p := range []string{"/my/registry/v2/", "/v2/"} {
		if r := do("GET", p, nil); r.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", p, r.StatusCode)
		}
	}
	data := []byte("prefixed blob")
	d := digest.FromBytes(data)
	for _, repo := range []string{"a", "b"} {
		r := do("POST", "/my/registry/v2/"+repo+"/blobs/uploads/", nil)
		loc := r.Header.Get("Location")
		if r.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, "/my/registry/v2/"+repo+"/blobs/uploads/") {
			t.Fatalf("POST: %d, Location %q", r.StatusCode, loc)
		}
		r = do("PUT", loc+"&digest="+d.String(), data)
		if r.StatusCode != http.StatusCreated || r.Header.Get("Location") != "/my/registry/v2/"+repo+"/blobs/"+d.String() {
			t.Fatalf("PUT: %d, Location %q", r.StatusCode, r.Header.Get("Location"))
		}
		if r := do("HEAD", r.Header.Get("Location"), nil); r.StatusCode != http.StatusOK {
			t.Errorf("HEAD blob under the prefix: %d", r.StatusCode)
		}
	}
	r := do("GET", "/my/registry/v2/_catalog", nil)
	if link := r.Header.Get("Link"); !strings.HasPrefix(link, "</my/registry/v2/_catalog?") {
		t.Errorf("catalog Link %q", link)
	}
	if r := do("GET", "/other/v2/", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("GET under another prefix: %d", r.StatusCode)
	}
}

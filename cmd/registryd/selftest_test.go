package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseChallenge(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{`realm="https://auth.example.com/token",service="registry",scope="repository:a/b:pull,push"`,
			map[string]string{"realm": "https://auth.example.com/token", "service": "registry", "scope": "repository:a/b:pull,push"}},
		{`realm="registryd"`, map[string]string{"realm": "registryd"}},
		{`Realm=plain, service="s"`, map[string]string{"realm": "plain", "service": "s"}},
		{``, map[string]string{}},
	} {
		got := parseChallenge(tc.in)
		if len(got) != len(tc.want) {
			t.Errorf("parseChallenge(%q) = %v, want %v", tc.in, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("parseChallenge(%q)[%s] = %q, want %q", tc.in, k, got[k], v)
			}
		}
	}
}

// fakeRegistry is the part of the Distribution API the self-test uses, behind a bearer token
// issued by /token for user:pass.
func fakeRegistry(t *testing.T) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	var upload bytes.Buffer
	blobs := map[string][]byte{}
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "pass" || r.URL.Query().Get("scope") != "repository:registryd-selftest/blob:pull,push" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, `{"token":"tok"}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+srv.URL+`/token",service="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.URL.Path == "/v2/":
		case r.Method == http.MethodPost:
			upload.Reset()
			w.Header().Set("Location", "/v2/registryd-selftest/blob/blobs/uploads/1")
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodPatch:
			_, _ = io.Copy(&upload, r.Body)
			w.Header().Set("Location", "/v2/registryd-selftest/blob/blobs/uploads/1")
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodPut:
			sum := sha256.Sum256(upload.Bytes())
			d := "sha256:" + hex.EncodeToString(sum[:])
			if r.URL.Query().Get("digest") != d {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			blobs[d] = bytes.Clone(upload.Bytes())
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodGet:
			b, ok := blobs[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]
			if !ok {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			_, _ = w.Write(b)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSelftest(t *testing.T) {
	srv := fakeRegistry(t)
	env := func(creds bool) func(string) string {
		return func(k string) string {
			if !creds {
				return ""
			}
			return map[string]string{"REGISTRYD_SELFTEST_USERNAME": "user", "REGISTRYD_SELFTEST_PASSWORD": "pass"}[k]
		}
	}
	var out bytes.Buffer
	if err := runSelftest(context.Background(), []string{srv.URL}, &out, env(true)); err != nil {
		t.Fatalf("selftest: %v", err)
	}
	if !strings.Contains(out.String(), "pushed and pulled sha256:") {
		t.Errorf("output %q", out.String())
	}
	for name, args := range map[string][]string{
		"no credentials": {srv.URL},
		"not a URL":      {"ftp://x"},
		"no URL":         {},
	} {
		if err := runSelftest(context.Background(), args, io.Discard, env(name != "no credentials")); err == nil {
			t.Errorf("%s: selftest succeeded", name)
		}
	}
}

func TestSleep(t *testing.T) {
	start := time.Now()
	if err := runSleep(context.Background(), []string{"50ms"}); err != nil || time.Since(start) < 50*time.Millisecond {
		t.Errorf("sleep 50ms: %v after %s", err, time.Since(start))
	}
	for _, args := range [][]string{{}, {"soon"}, {"-1s"}, {"1s", "2s"}} {
		if err := runSleep(context.Background(), args); err == nil {
			t.Errorf("sleep %v succeeded", args)
		}
	}
}

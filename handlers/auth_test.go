package handlers_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/registryd/registryd/auth"
	"github.com/registryd/registryd/driver/inmemory"
	"github.com/registryd/registryd/handlers"
	"github.com/registryd/registryd/internal/testenv"
	"github.com/registryd/registryd/storage"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Passwords of the access-rule tests' htpasswd users.
var accessUsers = map[string]string{
	"admin": "admin-pw-1", "alice": "alice-pw-2", "dave": "dave-pw-3", "bob": "bob-pw-4", "carol": "carol-pw-5",
}

// writeHtpasswd writes an htpasswd file of users (bcrypt at the minimum cost, for speed).
func writeHtpasswd(t *testing.T, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	for u, p := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(u + ":" + string(h) + "\n")
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type authServer struct {
	*httptest.Server
	logs    *syncBuffer
	metrics *prometheus.Registry
}

func newAuthServer(t *testing.T, opts auth.Options) *authServer {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	metrics := prometheus.NewRegistry()
	opts.Logger, opts.Metrics = log, metrics
	ctl, err := auth.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := storage.New(inmemory.New(), storage.Options{Secret: []byte("test-secret-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	e, err := handlers.New(handlers.Options{Registry: reg, DeleteEnabled: true, Logger: log, Metrics: metrics, Auth: ctl})
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(e)
	t.Cleanup(s.Close)
	return &authServer{Server: s, logs: logs, metrics: metrics}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// as is a request by user (its password from accessUsers; "" for anonymous).
func (s *authServer) as(t *testing.T, user, method, path string, body []byte, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("Authorization", basic(user, accessUsers[user]))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// push pushes a one-layer image as user and returns the layer's digest.
func (s *authServer) push(t *testing.T, user, repo, tag string) (layer, manifest digest.Digest) {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","repo":"` + repo + `"}`)
	lb := []byte("layer of " + repo)
	for _, b := range [][]byte{cfg, lb} {
		if r := s.as(t, user, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), b); r.StatusCode != 201 {
			t.Fatalf("push blob to %s as %s: %d", repo, user, r.StatusCode)
		}
	}
	m := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digest.FromBytes(cfg).String() + `","size":` + strconv.Itoa(len(cfg)) + `},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + digest.FromBytes(lb).String() + `","size":` + strconv.Itoa(len(lb)) + `}]}`)
	if r := s.as(t, user, "PUT", "/v2/"+repo+"/manifests/"+tag, m, "Content-Type", "application/vnd.oci.image.manifest.v1+json"); r.StatusCode != 201 {
		t.Fatalf("push manifest to %s as %s: %d", repo, user, r.StatusCode)
	}
	return digest.FromBytes(lb), digest.FromBytes(m)
}

// TestAccessRules is the table of user × repository × action → status of the access
// rules, with anonymous pull, groups, "*" (any authenticated user), mounts from a
// repository the caller may not pull, the filtered catalog, uploads bound to their
// starter, and failed logins logged without credentials and counted.
func TestAccessRules(t *testing.T) {
	s := newAuthServer(t, auth.Options{
		Htpasswd: &auth.HtpasswdOptions{Realm: "test realm", Path: writeHtpasswd(t, accessUsers)},
		Groups:   map[string][]string{"dev": {"alice", "dave"}},
		Rules: []auth.Rule{
			{Repository: "**", Users: []string{"admin"}, Actions: []string{"pull", "push", "delete"}},
			{Repository: "team/**", Groups: []string{"dev"}, Actions: []string{"pull", "push"}},
			{Repository: "team/**", Users: []string{"alice"}, Actions: []string{"delete"}},
			{Repository: "public/*", Anonymous: true, Actions: []string{"pull"}},
			{Repository: "public/*", Users: []string{"bob"}, Actions: []string{"pull", "push"}},
			{Repository: "bob/**", Users: []string{"bob"}, Actions: []string{"pull", "push"}},
			{Repository: "shared/*", Users: []string{"*"}, Actions: []string{"pull"}},
		},
	})
	teamLayer, _ := s.push(t, "admin", "team/app", "v1")
	_, delManifest := s.push(t, "admin", "team/del", "v1")
	_, del2 := s.push(t, "admin", "team/del2", "v1")
	publicLayer, _ := s.push(t, "admin", "public/app", "v1")
	s.push(t, "admin", "shared/x", "v1")
	s.push(t, "admin", "secret/x", "v1")

	const challenge = `Basic realm="test realm"`
	for _, c := range []struct {
		user, method, path string
		want               int
		code               string
	}{
		{"", "GET", "/v2/", 401, "UNAUTHORIZED"},
		{"carol", "GET", "/v2/", 200, ""},
		{"", "GET", "/v2/public/app/manifests/v1", 200, ""},
		{"", "HEAD", "/v2/public/app/blobs/" + publicLayer.String(), 200, ""},
		{"", "GET", "/v2/public/app/tags/list", 200, ""},
		{"carol", "GET", "/v2/public/app/manifests/v1", 200, ""},
		{"", "POST", "/v2/public/app/blobs/uploads/", 401, "UNAUTHORIZED"},
		{"carol", "POST", "/v2/public/app/blobs/uploads/", 403, "DENIED"},
		{"bob", "POST", "/v2/public/app/blobs/uploads/", 202, ""},
		{"", "GET", "/v2/public/app/nested/manifests/v1", 401, "UNAUTHORIZED"}, // * stays in one component
		{"alice", "GET", "/v2/team/app/manifests/v1", 200, ""},
		{"dave", "HEAD", "/v2/team/app/blobs/" + teamLayer.String(), 200, ""},
		{"dave", "POST", "/v2/team/app/blobs/uploads/", 202, ""},
		{"bob", "GET", "/v2/team/app/manifests/v1", 403, "DENIED"},
		{"bob", "GET", "/v2/team/app/tags/list", 403, "DENIED"},
		{"", "GET", "/v2/team/app/manifests/v1", 401, "UNAUTHORIZED"},
		{"dave", "DELETE", "/v2/team/del/manifests/" + delManifest.String(), 403, "DENIED"},
		{"alice", "DELETE", "/v2/team/del/manifests/" + delManifest.String(), 202, ""},
		{"", "DELETE", "/v2/team/del2/manifests/" + del2.String(), 401, "UNAUTHORIZED"},
		{"carol", "GET", "/v2/shared/x/manifests/v1", 200, ""},
		{"bob", "GET", "/v2/shared/x/manifests/v1", 200, ""},
		{"", "GET", "/v2/shared/x/manifests/v1", 401, "UNAUTHORIZED"},
		{"carol", "PUT", "/v2/shared/x/manifests/v2", 403, "DENIED"},
		{"carol", "GET", "/v2/secret/x/manifests/v1", 403, "DENIED"},
		{"carol", "GET", "/v2/secret/x/manifests/nope", 403, "DENIED"}, // denied before existence is known
		{"admin", "GET", "/v2/secret/x/manifests/v1", 200, ""},
		{"bob", "GET", "/v2/bob/anything/tags/list", 404, "NAME_UNKNOWN"},
		{"", "GET", "/v2/_catalog", 401, "UNAUTHORIZED"},
	} {
		r := s.as(t, c.user, c.method, c.path, nil)
		who := c.user
		if who == "" {
			who = "anonymous"
		}
		if r.StatusCode != c.want {
			b, _ := io.ReadAll(r.Body)
			t.Errorf("%s %s %s: %d, want %d: %s", who, c.method, c.path, r.StatusCode, c.want, b)
			continue
		}
		if c.code != "" && c.method != "HEAD" {
			if got := ociCode(t, r); got != c.code {
				t.Errorf("%s %s %s: code %s, want %s", who, c.method, c.path, got, c.code)
			}
		}
		if c.want == 401 && r.Header.Get("WWW-Authenticate") != challenge {
			t.Errorf("%s %s %s: WWW-Authenticate %q, want %q", who, c.method, c.path, r.Header.Get("WWW-Authenticate"), challenge)
		}
	}

	// Wrong passwords and unknown users are 401, logged with the remote address, counted,
	// and never logged with their password or Authorization header.
	for _, cred := range []string{basic("alice", "wrong-password-x"), basic("mallory", "mallory-pw-9"), "Basic %%%", "Bearer abc.def.ghi"} {
		req, _ := http.NewRequest("GET", s.URL+"/v2/public/app/manifests/v1", nil)
		req.Header.Set("Authorization", cred)
		req.Header.Set("X-Forwarded-For", "203.0.113.9") // not trusted: no proxy is configured
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") != challenge {
			t.Errorf("credentials %q: %d %q, want 401 with the challenge", cred, r.StatusCode, r.Header.Get("WWW-Authenticate"))
		}
	}
	logs := s.logs.String()
	for _, secret := range []string{"wrong-password-x", "mallory-pw-9", "alice-pw-2", "admin-pw-1", "Basic %", "Basic YW", "abc.def.ghi",
		base64.StdEncoding.EncodeToString([]byte("alice:wrong-password-x"))} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log shows a credential (%q)", secret)
		}
	}
	if n := strings.Count(logs, `"msg":"authentication failed"`); n != 4 || !strings.Contains(logs, `"remote_addr":"127.0.0.1"`) ||
		strings.Contains(logs, `"remote_addr":"203.0.113.9"`) {
		t.Errorf("%d failed logins logged (want 4, with remote_addr):\n%s", n, logs)
	}
	if got := failures(t, s.metrics); got["invalid_credentials"] != 2 || got["malformed_credentials"] != 2 {
		t.Errorf("registryd_auth_failures_total = %v, want invalid_credentials 2, malformed_credentials 2", got)
	}

	// Mounts: only from a repository the caller may pull; otherwise a plain upload.
	for _, c := range []struct {
		user, to, from string
		d              digest.Digest
		want           int
	}{
		{"bob", "bob/app", "team/app", teamLayer, 202},     // may not pull team/app
		{"bob", "bob/app", "public/app", publicLayer, 201}, // may pull public/app
		{"alice", "team/copy", "team/app", teamLayer, 201},
		{"alice", "team/copy2", "secret/x", teamLayer, 202}, // digest present in the store, not pullable
		{"alice", "team/copy3", "", teamLayer, 202},         // no source: never mounts with access control on
	} {
		r := s.as(t, c.user, "POST", "/v2/"+c.to+"/blobs/uploads/?mount="+c.d.String()+"&from="+c.from, nil)
		if r.StatusCode != c.want {
			t.Errorf("%s mounts %s from %q: %d, want %d", c.user, c.d, c.from, r.StatusCode, c.want)
		}
	}
	if r := s.as(t, "bob", "HEAD", "/v2/bob/app/blobs/"+teamLayer.String(), nil); r.StatusCode != 404 {
		t.Errorf("the refused mount linked the blob: HEAD %d", r.StatusCode)
	}

	// The catalog lists what each caller may pull.
	for user, want := range map[string][]string{
		"carol": {"public/app", "shared/x"},
		"bob":   {"bob/app", "public/app", "shared/x"},
		"alice": {"public/app", "shared/x", "team/app", "team/copy", "team/copy2", "team/copy3", "team/del", "team/del2"},
	} {
		r := s.as(t, user, "GET", "/v2/_catalog", nil)
		var cat struct {
			Repositories []string `json:"repositories"`
		}
		if err := json.NewDecoder(r.Body).Decode(&cat); err != nil || r.StatusCode != 200 {
			t.Fatalf("catalog as %s: %d %v", user, r.StatusCode, err)
		}
		if !slices.Equal(cat.Repositories, want) {
			t.Errorf("catalog as %s: %v, want %v", user, cat.Repositories, want)
		}
	}
	r := s.as(t, "alice", "GET", "/v2/_catalog?n=2", nil)
	var page struct {
		Repositories []string `json:"repositories"`
	}
	_ = json.NewDecoder(r.Body).Decode(&page)
	if !slices.Equal(page.Repositories, []string{"public/app", "shared/x"}) || !strings.Contains(r.Header.Get("Link"), "last=shared%2Fx") {
		t.Errorf("catalog page as alice: %v, Link %q", page.Repositories, r.Header.Get("Link"))
	}

	// An upload started by bob cannot be continued by admin, who may push there too.
	start := s.as(t, "bob", "POST", "/v2/public/app/blobs/uploads/", nil)
	loc := start.Header.Get("Location")
	if start.StatusCode != 202 || loc == "" {
		t.Fatalf("bob starts an upload: %d %q", start.StatusCode, loc)
	}
	if r := s.as(t, "admin", "PATCH", loc, []byte("chunk")); r.StatusCode != 404 || ociCode(t, r) != "BLOB_UPLOAD_UNKNOWN" {
		t.Errorf("admin continues bob's upload: %d, want 404 BLOB_UPLOAD_UNKNOWN", r.StatusCode)
	}
	if r := s.as(t, "bob", "PATCH", loc, []byte("chunk")); r.StatusCode != 202 {
		t.Errorf("bob continues his upload: %d, want 202", r.StatusCode)
	}
}

// failures reads registryd_auth_failures_total by reason.
func failures(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "registryd_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestHtpasswdWithoutRules: every authenticated user may do everything, nobody else
// anything; the catalog is whole.
func TestHtpasswdWithoutRules(t *testing.T) {
	s := newAuthServer(t, auth.Options{Htpasswd: &auth.HtpasswdOptions{Path: writeHtpasswd(t, accessUsers)}})
	s.push(t, "bob", "any/repo", "v1")
	if r := s.as(t, "carol", "GET", "/v2/any/repo/manifests/v1", nil); r.StatusCode != 200 {
		t.Errorf("carol pulls: %d", r.StatusCode)
	}
	r := s.as(t, "", "GET", "/v2/any/repo/manifests/v1", nil)
	if r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") != `Basic realm="registryd"` {
		t.Errorf("anonymous pull: %d %q, want 401 with the default realm", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	r = s.as(t, "carol", "GET", "/v2/_catalog", nil)
	if b, _ := io.ReadAll(r.Body); r.StatusCode != 200 || !bytes.Contains(b, []byte(`"any/repo"`)) {
		t.Errorf("catalog: %d %s", r.StatusCode, b)
	}
}

// TestTokenWithRules: under token auth with access rules, an action needs both the
// token's grant and a rule; anonymous rules need no token; the catalog needs its scope
// and shows what the rules let the caller pull.
func TestTokenWithRules(t *testing.T) {
	ts := testenv.StartTokenServer(t, "svc", "iss", nil, nil)
	s := newAuthServer(t, auth.Options{
		Token: &auth.TokenOptions{Realm: ts.URL, Service: "svc", Issuer: "iss", JWKS: ts.JWKSPath},
		Rules: []auth.Rule{
			{Repository: "team/**", Users: []string{"alice"}, Actions: []string{"pull", "push"}},
			{Repository: "public/*", Users: []string{"alice"}, Actions: []string{"pull", "push"}},
			{Repository: "public/*", Anonymous: true, Actions: []string{"pull"}},
		},
	})
	tok := func(sub string, access ...map[string]any) string {
		c := map[string]any{"iss": "iss", "aud": "svc", "sub": sub, "exp": time.Now().Add(time.Minute).Unix(), "access": access}
		return "Bearer " + ts.Sign(t, testenv.KidEdDSA, nil, c)
	}
	repo := func(name string, actions ...string) map[string]any {
		return map[string]any{"type": "repository", "name": name, "actions": actions}
	}
	catalog := map[string]any{"type": "registry", "name": "catalog", "actions": []string{"*"}}
	alice := tok("alice", repo("team/app", "pull", "push"), repo("public/x", "pull", "push"), catalog)
	blob := []byte("token blob")
	for _, r := range []string{"team/app", "public/x"} {
		if resp := s.as(t, "", "POST", "/v2/"+r+"/blobs/uploads/?digest="+digest.FromBytes(blob).String(), blob, "Authorization", alice); resp.StatusCode != 201 {
			t.Fatalf("alice pushes to %s: %d", r, resp.StatusCode)
		}
	}
	challenge := func(scope, errCode string) string {
		v := `Bearer realm="` + ts.URL + `",service="svc",scope="` + scope + `"`
		if errCode != "" {
			v += `,error="` + errCode + `"`
		}
		return v
	}
	for _, c := range []struct {
		name, authz, method, path string
		want                      int
		challenge                 string
	}{
		{"granted and allowed", alice, "POST", "/v2/team/app/blobs/uploads/", 202, ""},
		{"granted, not allowed by the rules", tok("bob", repo("team/app", "pull", "push")), "POST", "/v2/team/app/blobs/uploads/", 403,
			challenge("repository:team/app:pull,push", "insufficient_scope")},
		{"allowed, not granted", tok("alice", repo("team/app", "pull")), "POST", "/v2/team/app/blobs/uploads/", 403,
			challenge("repository:team/app:pull,push", "insufficient_scope")},
		{"anonymous rule without a token", "", "GET", "/v2/public/x/tags/list", 200, ""},
		{"anonymous rule with a token granting nothing", tok("bob"), "GET", "/v2/public/x/tags/list", 200, ""},
		{"anonymous rule does not push", "", "POST", "/v2/public/x/blobs/uploads/", 401, challenge("repository:public/x:pull,push", "")},
		{"no token", "", "GET", "/v2/team/app/tags/list", 401, challenge("repository:team/app:pull", "")},
		{"catalog without its scope", tok("alice", repo("team/app", "pull")), "GET", "/v2/_catalog", 403, challenge("registry:catalog:*", "insufficient_scope")},
	} {
		var hdr []string
		if c.authz != "" {
			hdr = []string{"Authorization", c.authz}
		}
		r := s.as(t, "", c.method, c.path, nil, hdr...)
		if r.StatusCode != c.want || r.Header.Get("WWW-Authenticate") != c.challenge {
			t.Errorf("%s: %d %q, want %d %q", c.name, r.StatusCode, r.Header.Get("WWW-Authenticate"), c.want, c.challenge)
		}
	}
	for sub, want := range map[string][]string{"alice": {"public/x", "team/app"}, "bob": {"public/x"}} {
		r := s.as(t, "", "GET", "/v2/_catalog", nil, "Authorization", tok(sub, catalog))
		var cat struct {
			Repositories []string `json:"repositories"`
		}
		if err := json.NewDecoder(r.Body).Decode(&cat); err != nil || !slices.Equal(cat.Repositories, want) {
			t.Errorf("catalog for %s: %v (%v), want %v", sub, cat.Repositories, err, want)
		}
	}
}

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/registryd/registryd/internal/testenv"
)

// try runs the CLI like run, but returns the failure instead of failing the test.
func (c *cli) try(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.home, "TMPDIR=" + os.TempDir(), "DOCKER_CONFIG=" + filepath.Join(c.home, ".docker")}
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w\nstderr: %s", filepath.Base(c.bin), strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// mustFail runs a client command that must fail (a wrong password).
func mustFail(t *testing.T, what string, out []byte, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s with a wrong password succeeded: %s", what, out)
	}
}

// tryDocker runs the docker CLI of d with stdin.
func tryDocker(ctx context.Context, d *testenv.Dockerd, stdin string, args ...string) (string, error) {
	cmd := d.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// snapshot maps every file below root to the SHA-256 of its content (directories to
// "dir"), to prove that refused requests wrote nothing.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			out[rel] = "dir"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameStore(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	if maps.Equal(before, after) {
		return
	}
	for k, v := range after {
		if before[k] != v {
			t.Errorf("%s changed the store: %s", what, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("%s removed %s from the store", what, k)
		}
	}
}

func htpasswdLine(t *testing.T, user, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + string(h) + "\n"
}

var digestRE = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// TestAuthClients logs in with every real client, against a registry secured by an
// htpasswd file and one secured by a token server the test runs: a wrong password fails
// in each client and writes nothing; the right one pushes and pulls. One Docker engine
// serves both registries.
func TestAuthClients(t *testing.T) {
	if testing.Short() {
		t.Skip("real clients: not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const user, password = "ci", "s3cret-Passw0rd"

	// The htpasswd registry.
	root := t.TempDir()
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(htpasswdLine(t, user, password)), 0o600); err != nil {
		t.Fatal(err)
	}
	basicReg := testenv.StartRegistryd(t, registryConfig("  filesystem:\n    rootdirectory: "+root+"\n",
		"auth:\n  htpasswd:\n    realm: e2e\n    path: "+htpasswd+"\n"))

	// The token registry: ci gets what it asks for below team/, nobody else anything.
	ts := testenv.StartTokenServer(t, "registryd-e2e", "e2e-issuer", map[string]string{user: password},
		func(u, typ, name string, actions []string) []string {
			if u == user && (typ == "repository" && strings.HasPrefix(name, "team/") || typ == "registry") {
				return actions
			}
			return nil
		})
	tokenRoot := t.TempDir()
	tokenReg := testenv.StartRegistryd(t, registryConfig("  filesystem:\n    rootdirectory: "+tokenRoot+"\n",
		fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    jwks: %s\n", ts.URL, ts.Service, ts.Issuer, ts.JWKSPath)))

	dk := testenv.StartDockerd(t)
	layerTar := filepath.Join(t.TempDir(), "layer.tar")
	writeRandomTar(t, layerTar, []int{300 << 10, 4 << 10})

	t.Run("htpasswd", func(t *testing.T) {
		host := basicReg.Host
		before := snapshot(t, root)

		// crane: login only stores the password; the push with the wrong one fails.
		crane := newCLI(t, "crane")
		pushed := craneLoginPush(t, ctx, crane, user, password, root, before, host+"/crane/img:v1", layerTar)
		crane.run(t, ctx, nil, "pull", "--insecure", host+"/crane/img:v1", "pulled.tar")
		src := host + "/crane/img:v1"

		// skopeo: --creds on each command.
		sk := newSkopeo(t)
		before = snapshot(t, root)
		if out, err := sk.try(ctx, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", user+":"+password,
			"--dest-creds", user+":wrong", "docker://"+src, "docker://"+host+"/skopeo/img:v1"); err == nil {
			t.Fatalf("skopeo copy with a wrong password succeeded: %s", out)
		}
		if out, err := sk.try(ctx, "inspect", "--tls-verify=false", "--creds", user+":wrong", "docker://"+src); err == nil {
			t.Fatalf("skopeo inspect with a wrong password succeeded: %s", out)
		}
		sameStore(t, "skopeo with a wrong password", before, snapshot(t, root))
		sk.run(t, ctx, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", user+":"+password,
			"--dest-creds", user+":"+password, "docker://"+src, "docker://"+host+"/skopeo/img:v1")
		var insp struct{ Digest string }
		if err := json.Unmarshal(sk.run(t, ctx, "inspect", "--tls-verify=false", "--creds", user+":"+password, "docker://"+host+"/skopeo/img:v1"), &insp); err != nil || insp.Digest != pushed {
			t.Fatalf("skopeo inspect of the copy: digest %q (%v), want %s", insp.Digest, err, pushed)
		}

		// oras: login verifies the password.
		oras := newCLI(t, "oras")
		before = snapshot(t, root)
		out, err := oras.try(ctx, []byte("wrong\n"), "login", "--plain-http", "-u", user, "--password-stdin", host)
		mustFail(t, "oras login", out, err)
		oras.writeFile(t, "a.txt", []byte("artifact by oras\n"))
		out, err = oras.try(ctx, nil, "push", "--plain-http", host+"/oras/art:v1", "a.txt:text/plain")
		mustFail(t, "oras push without a login", out, err)
		sameStore(t, "oras with a wrong password", before, snapshot(t, root))
		oras.run(t, ctx, []byte(password+"\n"), "login", "--plain-http", "-u", user, "--password-stdin", host)
		oras.run(t, ctx, nil, "push", "--plain-http", host+"/oras/art:v1", "a.txt:text/plain")
		oras.run(t, ctx, nil, "pull", "--plain-http", "-o", "out", host+"/oras/art:v1")
		if got, err := os.ReadFile(filepath.Join(oras.dir, "out", "a.txt")); err != nil || string(got) != "artifact by oras\n" {
			t.Fatalf("oras pull: %q, %v", got, err)
		}

		// regctl: login checks the password (and keeps it: the push fails too).
		regctl := newCLI(t, "regctl")
		regctl.run(t, ctx, nil, "registry", "set", "--tls", "disabled", "--skip-check", host)
		before = snapshot(t, root)
		out, err = regctl.try(ctx, []byte("wrong"), "registry", "login", "-u", user, "--pass-stdin", host)
		mustFail(t, "regctl registry login", out, err)
		out, err = regctl.try(ctx, nil, "image", "copy", src, host+"/regctl/img:v1")
		mustFail(t, "regctl image copy", out, err)
		sameStore(t, "regctl with a wrong password", before, snapshot(t, root))
		regctl.run(t, ctx, []byte(password), "registry", "login", "-u", user, "--pass-stdin", host)
		regctl.run(t, ctx, nil, "image", "copy", src, host+"/regctl/img:v1")
		if got := strings.TrimSpace(string(regctl.run(t, ctx, nil, "image", "digest", host+"/regctl/img:v1"))); got != pushed {
			t.Fatalf("regctl image digest %q, want %s", got, pushed)
		}

		// docker: login, push, remove, pull.
		ref := host + "/docker/img:v1"
		id := strings.TrimSpace(dk.Run(t, "import", layerTar, ref))
		before = snapshot(t, root)
		out2, err := tryDocker(ctx, dk, "wrong\n", "login", "-u", user, "--password-stdin", host)
		if err == nil {
			t.Fatalf("docker login with a wrong password succeeded: %s", out2)
		}
		if out2, err := tryDocker(ctx, dk, "", "push", ref); err == nil {
			t.Fatalf("docker push without a login succeeded: %s", out2)
		}
		sameStore(t, "docker with a wrong password", before, snapshot(t, root))
		if _, err := tryDocker(ctx, dk, password+"\n", "login", "-u", user, "--password-stdin", host); err != nil {
			t.Fatal(err)
		}
		dk.Run(t, "push", ref)
		dk.Run(t, "rmi", ref)
		dk.Run(t, "pull", ref)
		if got := strings.TrimSpace(dk.Run(t, "image", "inspect", "--format", "{{.Id}}", ref)); got != id {
			t.Fatalf("pulled image %s, pushed %s", got, id)
		}
		// helm: registry login verifies the password.
		helm := newCLI(t, "helm")
		helm.writeFile(t, "Chart.yaml", []byte("apiVersion: v2\nname: secured\nversion: 0.1.0\n"))
		helm.run(t, ctx, nil, "package", ".", "-d", "pkg")
		before = snapshot(t, root)
		out, err = helm.try(ctx, []byte("wrong"), "registry", "login", host, "-u", user, "--password-stdin", "--insecure")
		mustFail(t, "helm registry login", out, err)
		out, err = helm.try(ctx, nil, "push", "pkg/secured-0.1.0.tgz", "oci://"+host+"/charts", "--plain-http")
		mustFail(t, "helm push without a login", out, err)
		sameStore(t, "helm with a wrong password", before, snapshot(t, root))
		helm.run(t, ctx, []byte(password), "registry", "login", host, "-u", user, "--password-stdin", "--insecure")
		helm.run(t, ctx, nil, "push", "pkg/secured-0.1.0.tgz", "oci://"+host+"/charts", "--plain-http")
		if err := os.Mkdir(filepath.Join(helm.dir, "pulled"), 0o755); err != nil {
			t.Fatal(err)
		}
		helm.run(t, ctx, nil, "pull", "oci://"+host+"/charts/secured", "--version", "0.1.0", "--plain-http", "-d", "pulled")
		want, _ := os.ReadFile(filepath.Join(helm.dir, "pkg", "secured-0.1.0.tgz"))
		if got, err := os.ReadFile(filepath.Join(helm.dir, "pulled", "secured-0.1.0.tgz")); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("helm pull: %d bytes, want %d: %v", len(got), len(want), err)
		}

		if logs := basicReg.Output(); strings.Contains(logs, password) || strings.Contains(logs, base64.StdEncoding.EncodeToString([]byte(user+":"))) { // "ci:" encodes to 4 characters, the start of every Basic credential of ci
			t.Errorf("the registry log shows a password or an Authorization header")
		}
	})

	t.Run("token", func(t *testing.T) {
		host := tokenReg.Host
		before := snapshot(t, tokenRoot)

		crane := newCLI(t, "crane")
		craneLoginPush(t, ctx, crane, user, password, tokenRoot, before, host+"/team/crane:v1", layerTar)
		// The token server grants nothing outside team/: the push is refused.
		out, err := crane.try(ctx, nil, "copy", "--insecure", host+"/team/crane:v1", host+"/other/crane:v1")
		mustFail(t, "crane copy outside the granted repositories", out, err)

		// oras sends credentials to a loopback realm only when the registry has the
		// realm's host name: reach the registry as localhost too.
		oras, orasHost := newCLI(t, "oras"), strings.Replace(host, "127.0.0.1", "localhost", 1)
		out, err = oras.try(ctx, []byte("wrong\n"), "login", "--plain-http", "-u", user, "--password-stdin", orasHost)
		mustFail(t, "oras login", out, err)
		oras.run(t, ctx, []byte(password+"\n"), "login", "--plain-http", "-u", user, "--password-stdin", orasHost)
		oras.writeFile(t, "a.txt", []byte("artifact by oras\n"))
		oras.run(t, ctx, nil, "push", "--plain-http", orasHost+"/team/oras:v1", "a.txt:text/plain")
		oras.run(t, ctx, nil, "pull", "--plain-http", "-o", "out", orasHost+"/team/oras:v1")
		if got, err := os.ReadFile(filepath.Join(oras.dir, "out", "a.txt")); err != nil || string(got) != "artifact by oras\n" {
			t.Fatalf("oras pull: %q, %v", got, err)
		}

		ref := host + "/team/docker:v1"
		id := strings.TrimSpace(dk.Run(t, "import", layerTar, ref))
		before = snapshot(t, tokenRoot)
		if out, err := tryDocker(ctx, dk, "wrong\n", "login", "-u", user, "--password-stdin", host); err == nil {
			t.Fatalf("docker login with a wrong password succeeded: %s", out)
		}
		sameStore(t, "docker with a wrong password", before, snapshot(t, tokenRoot))
		if _, err := tryDocker(ctx, dk, password+"\n", "login", "-u", user, "--password-stdin", host); err != nil {
			t.Fatal(err)
		}
		dk.Run(t, "push", ref)
		dk.Run(t, "rmi", ref)
		dk.Run(t, "pull", ref)
		if got := strings.TrimSpace(dk.Run(t, "image", "inspect", "--format", "{{.Id}}", ref)); got != id {
			t.Fatalf("pulled image %s, pushed %s", got, id)
		}
		issued := strings.Join(ts.Issued(), "\n")
		if !regexp.MustCompile(`repository:team/docker:(pull,push|push,pull)`).MatchString(issued) {
			t.Errorf("docker never asked the token server for pull and push on team/docker:\n%s", issued)
		}
	})
}

// tokenCase is one request with a bearer token and the answer it must get.
type tokenCase struct {
	name      string
	token     string
	method    string
	path      string
	body      []byte
	want      int
	challenge string // the whole WWW-Authenticate value
	code      string
}

// TestForgedTokens sends forged, stale and insufficient tokens to a registry secured by
// token auth: each gets 401 or 403 with the challenge naming the scope the request needs
// and the OCI error body, and the store is byte-for-byte unchanged. Tokens that are
// right pass with each accepted algorithm, the catalog needs registry:catalog:*, a
// mount names its source's pull, and an upload started by one subject is unknown to
// another.
func TestForgedTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("registryd process: not in -short")
	}
	ts := testenv.StartTokenServer(t, "registryd-e2e", "e2e-issuer", nil, nil)
	root := t.TempDir()
	reg := testenv.StartRegistryd(t, registryConfig("  filesystem:\n    rootdirectory: "+root+"\n",
		fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    jwks: %s\n", ts.URL, ts.Service, ts.Issuer, ts.JWKSPath)))
	now := time.Now()
	claims := func(sub string, access ...map[string]any) map[string]any {
		c := map[string]any{"iss": ts.Issuer, "aud": ts.Service, "sub": sub, "exp": now.Add(5 * time.Minute).Unix(),
			"nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix()}
		if access != nil {
			c["access"] = access
		}
		return c
	}
	grant := func(typ, name string, actions ...string) map[string]any {
		return map[string]any{"type": typ, "name": name, "actions": actions}
	}
	with := func(c map[string]any, k string, v any) map[string]any {
		c[k] = v
		return c
	}
	pushApp := grant("repository", "team/app", "pull", "push")
	good := func() map[string]any { return claims("ci", pushApp) }

	// A blob pushed with a good token, for the reads and the mount below.
	blob := []byte("blob in team/app")
	bd := digest.FromBytes(blob)
	if r := tokenReq(t, reg.URL, ts.Sign(t, testenv.KidES256, nil, good()), "POST", "/v2/team/app/blobs/uploads/?digest="+bd.String(), blob); r.StatusCode != 201 {
		t.Fatalf("push with a good token: %d", r.StatusCode)
	}

	hs256 := func(secret []byte, c map[string]any) string {
		h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT", "kid": testenv.KidES256})
		b, _ := json.Marshal(c)
		signed := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(b)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(signed))
		return signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	jwks, err := os.ReadFile(ts.JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	strangerTok, err := testenv.SignJWT(stranger, "ES256", map[string]any{"alg": "ES256", "kid": testenv.KidES256}, good())
	if err != nil {
		t.Fatal(err)
	}
	goodTok := ts.Sign(t, testenv.KidES256, nil, good())
	noneTok := func() string {
		h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
		b, _ := json.Marshal(good())
		return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(b) + "."
	}()

	const (
		realm     = `Bearer realm="%s",service="%s",scope="%s"`
		pushScope = "repository:team/app:pull,push"
	)
	ch := func(scope, errCode string) string {
		s := fmt.Sprintf(realm, ts.URL, ts.Service, scope)
		if errCode != "" {
			s += `,error="` + errCode + `"`
		}
		return s
	}
	upload := "/v2/team/app/blobs/uploads/?digest=" + digest.FromBytes([]byte("forged")).String()
	invalid, insufficient := ch(pushScope, "invalid_token"), ch(pushScope, "insufficient_scope")
	forged := []tokenCase{
		{"no token", "", "POST", upload, []byte("forged"), 401, ch(pushScope, ""), "UNAUTHORIZED"},
		{"alg none", noneTok, "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"HS256 keyed with the public JWKS", hs256(jwks, good()), "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"unknown key", strangerTok, "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"unknown kid", ts.Sign(t, testenv.KidES256, map[string]any{"kid": "rotated-away"}, good()), "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"kid of another algorithm", ts.Sign(t, testenv.KidES256, map[string]any{"kid": testenv.KidRS256}, good()), "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"expired", ts.Sign(t, testenv.KidES256, nil, with(good(), "exp", now.Add(-10*time.Minute).Unix())), "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"not yet valid", ts.Sign(t, testenv.KidES256, nil, with(good(), "nbf", now.Add(10*time.Minute).Unix())), "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"wrong audience", ts.Sign(t, testenv.KidES256, nil, with(good(), "aud", "another-registry")), "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"wrong issuer", ts.Sign(t, testenv.KidES256, nil, with(good(), "iss", "someone-else")), "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"truncated", goodTok[:len(goodTok)-12], "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"tampered claims", tamper(goodTok), "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"token over 64 KiB", ts.Sign(t, testenv.KidES256, map[string]any{"pad": strings.Repeat("x", 64<<10)}, good()), "POST", upload, []byte("forged"), 401, invalid, "UNAUTHORIZED"},
		{"scope for another repository", ts.Sign(t, testenv.KidES256, nil, claims("ci", grant("repository", "team/other", "pull", "push"))), "POST", upload, []byte("forged"), 403, insufficient, "DENIED"},
		{"pull used for push", ts.Sign(t, testenv.KidES256, nil, claims("ci", grant("repository", "team/app", "pull"))), "POST", upload, []byte("forged"), 403, insufficient, "DENIED"},
		{"no access claim", ts.Sign(t, testenv.KidES256, nil, claims("ci")), "POST", upload, []byte("forged"), 403, insufficient, "DENIED"},
		{"pull used for delete", ts.Sign(t, testenv.KidES256, nil, claims("ci", pushApp)), "DELETE", "/v2/team/app/blobs/" + bd.String(), nil, 403, ch("repository:team/app:delete", "insufficient_scope"), "DENIED"},
		{"catalog without its scope", goodTok, "GET", "/v2/_catalog", nil, 403, ch("registry:catalog:*", "insufficient_scope"), "DENIED"},
		{"anonymous mount", "", "POST", "/v2/team/dst/blobs/uploads/?mount=" + bd.String() + "&from=team/app", nil, 401,
			ch("repository:team/dst:pull,push repository:team/app:pull", ""), "UNAUTHORIZED"},
		{"anonymous base", "", "GET", "/v2/", nil, 401, fmt.Sprintf(`Bearer realm="%s",service="%s"`, ts.URL, ts.Service), "UNAUTHORIZED"},
	}
	before := snapshot(t, root)
	for _, c := range forged {
		r := tokenReq(t, reg.URL, c.token, c.method, c.path, c.body)
		b, _ := io.ReadAll(r.Body)
		if r.StatusCode != c.want {
			t.Errorf("%s: %d, want %d: %s", c.name, r.StatusCode, c.want, b)
			continue
		}
		if got := r.Header.Get("WWW-Authenticate"); got != c.challenge {
			t.Errorf("%s: WWW-Authenticate\n %s\nwant\n %s", c.name, got, c.challenge)
		}
		var env struct {
			Errors []struct{ Code, Message string } `json:"errors"`
		}
		if err := json.Unmarshal(b, &env); err != nil || len(env.Errors) != 1 || env.Errors[0].Code != c.code || env.Errors[0].Message == "" {
			t.Errorf("%s: body %s, want one %s error", c.name, b, c.code)
		}
	}
	sameStore(t, "the refused tokens", before, snapshot(t, root))
	if logs := reg.Output(); strings.Contains(logs, goodTok[:40]) || strings.Contains(logs, "Bearer ey") {
		t.Errorf("the registry log shows a token")
	}

	// Right tokens pass, with each accepted algorithm.
	for _, kid := range []string{testenv.KidES256, testenv.KidEdDSA, testenv.KidRS256} {
		tok := ts.Sign(t, kid, nil, claims("ci", grant("repository", "team/app", "pull")))
		if r := tokenReq(t, reg.URL, tok, "HEAD", "/v2/team/app/blobs/"+bd.String(), nil); r.StatusCode != 200 {
			t.Errorf("a pull token signed with %s: HEAD %d, want 200", kid, r.StatusCode)
		}
	}
	catTok := ts.Sign(t, testenv.KidEdDSA, nil, claims("ci", grant("registry", "catalog", "*")))
	if r := tokenReq(t, reg.URL, catTok, "GET", "/v2/_catalog", nil); r.StatusCode != 200 {
		t.Errorf("catalog with registry:catalog:*: %d", r.StatusCode)
	}

	// A mount without pull on the source is a plain upload; with it, a mount.
	dstOnly := ts.Sign(t, testenv.KidES256, nil, claims("ci", grant("repository", "team/dst", "pull", "push")))
	if r := tokenReq(t, reg.URL, dstOnly, "POST", "/v2/team/dst/blobs/uploads/?mount="+bd.String()+"&from=team/app", nil); r.StatusCode != 202 {
		t.Errorf("mount without pull on the source: %d, want 202", r.StatusCode)
	}
	both := ts.Sign(t, testenv.KidES256, nil, claims("ci", grant("repository", "team/dst", "pull", "push"), grant("repository", "team/app", "pull")))
	if r := tokenReq(t, reg.URL, both, "POST", "/v2/team/dst/blobs/uploads/?mount="+bd.String()+"&from=team/app", nil); r.StatusCode != 201 {
		t.Errorf("mount with pull on the source: %d, want 201", r.StatusCode)
	}

	// An upload started by ci is unknown to another subject with the same grants.
	r := tokenReq(t, reg.URL, goodTok, "POST", "/v2/team/app/blobs/uploads/", nil)
	loc := r.Header.Get("Location")
	other := ts.Sign(t, testenv.KidES256, nil, claims("mallory", pushApp))
	if r := tokenReq(t, reg.URL, other, "PATCH", loc, []byte("chunk")); r.StatusCode != 404 {
		t.Errorf("another subject continues ci's upload: %d, want 404", r.StatusCode)
	}
	if r := tokenReq(t, reg.URL, goodTok, "PATCH", loc, []byte("chunk")); r.StatusCode != 202 {
		t.Errorf("ci continues its upload: %d, want 202", r.StatusCode)
	}
}

// tamper flips the subject of a token's claims, keeping its signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	b = bytes.Replace(b, []byte(`"sub":"ci"`), []byte(`"sub":"cj"`), 1)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// tokenReq sends one request with a bearer token ("" for none).
func tokenReq(t *testing.T, base, tok, method, path string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestHtpasswdReload edits the htpasswd file of a running registry the way a Kubernetes
// Secret update does (an atomic swap of the ..data symlink): the new user can log in and
// the removed one cannot, without a restart.
func TestHtpasswdReload(t *testing.T) {
	if testing.Short() {
		t.Skip("registryd process: not in -short")
	}
	dir := t.TempDir()
	version := func(name, content string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "htpasswd"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", htpasswdLine(t, "old", "old-password"))
	if err := os.Symlink("..data/htpasswd", filepath.Join(dir, "htpasswd")); err != nil {
		t.Fatal(err)
	}
	reg := testenv.StartRegistryd(t, registryConfig(filesystemBackend(t), "auth:\n  htpasswd:\n    path: "+filepath.Join(dir, "htpasswd")+"\n"))
	pid := reg.Cmd.Process.Pid
	login := func(user, pw string) int {
		req, _ := http.NewRequest("GET", reg.URL+"/v2/", nil)
		req.SetBasicAuth(user, pw)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if login("old", "old-password") != 200 || login("new", "new-password") != 401 {
		t.Fatal("before the edit: old must log in, new must not")
	}
	version("..v2", htpasswdLine(t, "new", "new-password"))
	deadline := time.Now().Add(15 * time.Second)
	for login("new", "new-password") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the new user cannot log in 15s after the edit")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := login("old", "old-password"); got != 401 {
		t.Errorf("the removed user logs in: %d", got)
	}
	// A malformed version is refused; the users loaded before stay.
	version("..v3", "new:$apr1$broken$hash\n")
	time.Sleep(3 * time.Second)
	if login("new", "new-password") != 200 {
		t.Error("a malformed edit dropped the users loaded before")
	}
	if !strings.Contains(reg.Output(), "htpasswd reload failed") || !strings.Contains(reg.Output(), "htpasswd:1:") {
		t.Errorf("the malformed edit is not logged with its file and line:\n%s", reg.Output())
	}
	if reg.Cmd.Process.Pid != pid {
		t.Fatal("the registry restarted")
	}
}

// TestAuthStartupErrors: a missing or malformed htpasswd file, or unusable token keys,
// stop start-up with a message naming the file (and line).
func TestAuthStartupErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("registryd process: not in -short")
	}
	bin := testenv.RegistrydBinary(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := htpasswdLine(t, "a", "pw")
	md5 := write("md5", good+"b:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n")
	malformed := write("malformed", "# users\n"+good+"no-colon-here\n")
	missing := filepath.Join(dir, "missing")
	badJWKS := write("jwks.json", `{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`)
	for _, c := range []struct{ name, auth, want string }{
		{"md5 entry", "  htpasswd:\n    path: " + md5, md5 + ":2: user \"b\": not a bcrypt hash"},
		{"malformed line", "  htpasswd:\n    path: " + malformed, malformed + ":3: malformed line"},
		{"missing file", "  htpasswd:\n    path: " + missing, missing},
		{"hmac key", "  token:\n    realm: http://x/token\n    service: s\n    issuer: i\n    jwks: " + badJWKS, badJWKS + ": key 0"},
		{"both", "  htpasswd:\n    path: " + md5 + "\n  token:\n    realm: r\n    service: s\n    issuer: i\n    jwks: j", "auth: set htpasswd or token, not both"},
	} {
		cfg := write("config.yml", registryConfig(filesystemBackend(t), "auth:\n"+c.auth+"\n"))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bin, "serve", cfg).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(startupFailure(out), c.want) {
			t.Errorf("%s: %v, output %q; want a failure naming %q", c.name, err, out, c.want)
		}
	}
}

// try runs skopeo like run, but returns the failure instead of failing the test.
func (s *skopeoCLI) try(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"--policy", s.policy, "--command-timeout", "60s"}, args...)
	cmd := exec.CommandContext(ctx, s.bin, full...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.home, "TMPDIR=" + os.TempDir(), "REGISTRY_AUTH_FILE=" + s.auth}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("skopeo %s: %w\nstderr: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// craneLoginPush logs crane in with a wrong password and checks that its push of layerTar
// to ref fails and leaves the store under root as it was (before), then logs in with the
// right password, pushes, and checks that ref resolves to the pushed digest, which it
// returns.
func craneLoginPush(t *testing.T, ctx context.Context, crane *cli, user, password, root string, before map[string]string, ref, layerTar string) string {
	t.Helper()
	host, _, _ := strings.Cut(ref, "/")
	crane.run(t, ctx, []byte("wrong"), "auth", "login", host, "-u", user, "--password-stdin")
	out, err := crane.try(ctx, nil, "append", "--insecure", "--oci-empty-base", "-f", layerTar, "-t", ref)
	mustFail(t, "crane append", out, err)
	sameStore(t, "crane with a wrong password", before, snapshot(t, root))
	crane.run(t, ctx, []byte(password), "auth", "login", host, "-u", user, "--password-stdin")
	pushed := digestRE.FindString(string(crane.run(t, ctx, nil, "append", "--insecure", "--oci-empty-base", "-f", layerTar, "-t", ref)))
	if got := strings.TrimSpace(string(crane.run(t, ctx, nil, "digest", "--insecure", ref))); pushed == "" || got != pushed {
		t.Fatalf("crane digest %q, want the pushed %q", got, pushed)
	}
	return pushed
}

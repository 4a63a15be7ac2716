package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/registryd/registryd/internal/testenv"
)

// serverPair writes a server key pair for hosts into a fresh directory and returns the
// REGISTRY_* variables that serve it, and the two file paths.
func serverPair(t *testing.T, ca *testenv.CA, commonName string, hosts ...string) (env []string, certPath, keyPath string) {
	t.Helper()
	certPath, keyPath = ca.Server(t, commonName, hosts...).WriteFiles(t, t.TempDir(), "tls.crt", "tls.key")
	return []string{"REGISTRY_HTTP_TLS_CERTIFICATE=" + certPath, "REGISTRY_HTTP_TLS_KEY=" + keyPath}, certPath, keyPath
}

// tlsTransport trusts ca and presents the client certificates.
func tlsTransport(ca *testenv.CA, certs ...tls.Certificate) *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs}, ForceAttemptHTTP2: true}
}

// TestTLSDocker pushes and pulls with the Docker engine over TLS, trusting a CA the test
// made through certs.d; then against a registry requiring client certificates, where a
// push without one fails and a push with one (client.cert in certs.d) succeeds. The
// engine treats 127.0.0.0/8 as insecure and would skip certificate verification there,
// so the registries run in a network namespace the test makes, on its veth address,
// which the engine (in the host namespace) reaches through the veth pair.
func TestTLSDocker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts registryd and the Docker engine")
	}
	ns := testenv.NewNetNS(t)
	ca := testenv.NewCA(t, "registryd e2e CA")
	clientCA := testenv.NewCA(t, "registryd e2e client CA")
	clientCAFile := filepath.Join(t.TempDir(), "clientca.pem")
	if err := os.WriteFile(clientCAFile, clientCA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	client := clientCA.Client(t, "docker")
	env, _, _ := serverPair(t, ca, "registryd", ns.IP)
	reg := testenv.StartRegistrydTLS(t, registryConfig(filesystemBackend(t), ""),
		testenv.TLSOptions{NetNS: ns, Client: &tls.Config{RootCAs: ca.Pool()}}, env...)
	mtls := testenv.StartRegistrydTLS(t, registryConfig(filesystemBackend(t), ""),
		testenv.TLSOptions{NetNS: ns, Client: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS(t)}}},
		append(env, "REGISTRY_HTTP_TLS_CLIENTCAS="+clientCAFile)...)
	dk := testenv.StartDockerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Not trusted yet: the engine verifies the certificate.
	tarPath := filepath.Join(t.TempDir(), "img.tar")
	writeRandomTar(t, tarPath, []int{256 << 10, 3000})
	ref := reg.Host + "/tls/img:v1"
	out, err := dk.Exec(ctx, "import", tarPath, ref)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(out)
	if _, err := dk.Exec(ctx, "push", ref); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("push to a registry whose CA the engine does not trust: %v, want a certificate error", err)
	}

	dk.TrustRegistry(t, reg.Host, ca.PEM)
	out, err = dk.Exec(ctx, "push", ref)
	if err != nil {
		t.Fatal(err)
	}
	m := dockerPushDigestRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("docker push: no digest in output:\n%s", out)
	}
	pushed := m[1]
	if _, err := dk.Exec(ctx, "rmi", ref); err != nil {
		t.Fatal(err)
	}
	out, err = dk.Exec(ctx, "pull", ref)
	if err != nil {
		t.Fatal(err)
	}
	if m := dockerPullDigestRE.FindStringSubmatch(out); m == nil || m[1] != pushed {
		t.Fatalf("docker pull: %q, want digest %s", out, pushed)
	}
	if out, err := dk.Exec(ctx, "image", "inspect", "--format", "{{.Id}}", ref); err != nil || strings.TrimSpace(out) != id {
		t.Fatalf("image ID after pull: %q (%v), want %s", out, err, id)
	}

	// Mutual TLS: the CA alone is not enough; with the client certificate it works.
	mref := mtls.Host + "/tls/img:v1"
	if _, err := dk.Exec(ctx, "tag", ref, mref); err != nil {
		t.Fatal(err)
	}
	dk.TrustRegistry(t, mtls.Host, ca.PEM)
	if _, err := dk.Exec(ctx, "push", mref); err == nil {
		t.Fatal("push without a client certificate to a registry with http.tls.clientcas succeeded")
	}
	dk.ClientCertificate(t, mtls.Host, client.CertPEM, client.KeyPEM)
	out, err = dk.Exec(ctx, "push", mref)
	if err != nil {
		t.Fatal(err)
	}
	if m := dockerPushDigestRE.FindStringSubmatch(out); m == nil || m[1] != pushed {
		t.Fatalf("docker push with a client certificate: %q, want digest %s", out, pushed)
	}
}

// TestTLSGoContainerRegistry pushes and pulls with go-containerregistry over TLS, with
// absolute Location headers (http.relativeurls: false), so every upload step follows an
// https:// URL the registry built from the request. It then checks HTTP/2, the refusal of
// TLS 1.1 and of clients that do not trust the CA, and replaces the key pair on disk:
// new connections get the new certificate while the registry runs.
func TestTLSGoContainerRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts registryd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	ca := testenv.NewCA(t, "registryd e2e CA")
	env, certPath, keyPath := serverPair(t, ca, "first", "127.0.0.1")
	reg := testenv.StartRegistrydTLS(t, registryConfig(inmemoryBackend(t), ""),
		testenv.TLSOptions{Client: &tls.Config{RootCAs: ca.Pool()}}, append(env, "REGISTRY_HTTP_RELATIVEURLS=false")...)

	tr := tlsTransport(ca)
	defer tr.CloseIdleConnections()
	img := pushPullGGCR(t, ctx, reg.Host+"/tls/ggcr:v1", tr)

	// The upload Location is absolute, on the request's https origin.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, reg.URL+"/v2/tls/ggcr/blobs/uploads/", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != 202 || !strings.HasPrefix(loc, reg.URL+"/v2/tls/ggcr/blobs/uploads/") {
		t.Errorf("POST upload: %d, Location %q, want it under %s/v2/tls/ggcr/blobs/uploads/", resp.StatusCode, loc, reg.URL)
	}
	if resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
		t.Errorf("protocol %s (ALPN %q), want HTTP/2", resp.Proto, resp.TLS.NegotiatedProtocol)
	}

	// A client without the CA is refused by its own verification; TLS 1.1 by the server.
	r, err := name.ParseReference(reg.Host + "/tls/ggcr:v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(r, remote.WithContext(ctx)); err == nil {
		t.Error("a client that does not trust the CA reached the registry")
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get(reg.URL + "/v2/"); err == nil {
		resp.Body.Close()
		t.Errorf("TLS 1.1 client served: %d over %s", resp.StatusCode, tls.VersionName(resp.TLS.Version))
	}

	// Rotate: the new pair is written next to the old and renamed over it, as tools that
	// rotate certificates do; new connections must get it within a few seconds.
	next := ca.Server(t, "second", "127.0.0.1")
	for _, f := range []struct {
		path string
		b    []byte
	}{{certPath, next.CertPEM}, {keyPath, next.KeyPEM}} {
		if err := os.WriteFile(f.path+".new", f.b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.path+".new", f.path); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := tls.Dial("tcp", reg.Host, &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName
		conn.Close()
		if cn == "second" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the key pair was replaced on disk new connections still get %q", cn)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// And the registry keeps serving on the new pair.
	tr2 := tlsTransport(ca)
	defer tr2.CloseIdleConnections()
	got, err := remote.Image(r, remote.WithContext(ctx), remote.WithTransport(tr2))
	if err != nil {
		t.Fatalf("pull after the rotation: %v", err)
	}
	if gd, _ := got.Digest(); gd != mustDigest(t, img) {
		t.Errorf("pull after the rotation: digest %s, want %s", gd, mustDigest(t, img))
	}
}

// TestTLSMutual checks http.tls.clientcas with go-containerregistry and a plain client:
// refused without a client certificate or with one of another CA, served with one of the
// configured CA.
func TestTLSMutual(t *testing.T) {
	if testing.Short() {
		t.Skip("starts registryd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca, clientCA := testenv.NewCA(t, "registryd e2e CA"), testenv.NewCA(t, "registryd e2e client CA")
	clientCAFile := filepath.Join(t.TempDir(), "clientca.pem")
	if err := os.WriteFile(clientCAFile, clientCA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	good := clientCA.Client(t, "good").TLS(t)
	env, _, _ := serverPair(t, ca, "registryd", "127.0.0.1")
	reg := testenv.StartRegistrydTLS(t, registryConfig(inmemoryBackend(t), ""),
		testenv.TLSOptions{Client: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{good}}},
		append(env, "REGISTRY_HTTP_TLS_CLIENTCAS="+clientCAFile)...)

	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no client certificate", nil},
		{"certificate of another CA", []tls.Certificate{ca.Client(t, "stranger").TLS(t)}},
	} {
		tr := tlsTransport(ca, tc.certs...)
		tr.ForceAttemptHTTP2 = false
		if resp, err := (&http.Client{Transport: tr}).Get(reg.URL + "/v2/"); err == nil {
			resp.Body.Close()
			t.Errorf("%s: served %d", tc.name, resp.StatusCode)
		}
		r, _ := name.ParseReference(reg.Host + "/tls/mutual:v1")
		img, _ := random.Image(1024, 1)
		if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithTransport(tr)); err == nil {
			t.Errorf("%s: go-containerregistry pushed", tc.name)
		}
	}
	tr := tlsTransport(ca, good)
	defer tr.CloseIdleConnections()
	pushPullGGCR(t, ctx, reg.Host+"/tls/mutual:v1", tr)
}

// TestTLSBehindProxy runs registryd on plain HTTP behind a reverse proxy that terminates
// TLS, as an ingress does, and pushes through the proxy with go-containerregistry:
// with http.relativeurls false the Location headers are built from the proxy's
// X-Forwarded-Proto and X-Forwarded-Host; with http.host they name that host whatever
// the request says.
func TestTLSBehindProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts registryd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca := testenv.NewCA(t, "registryd e2e CA")

	// Through the proxy, with Locations from the forwarding headers.
	reg := testenv.StartRegistryd(t, registryConfig(inmemoryBackend(t), ""), "REGISTRY_HTTP_RELATIVEURLS=false")
	target, _ := url.Parse(reg.URL)
	proxy := httptest.NewUnstartedServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.SetXForwarded()
	}})
	pair := ca.Server(t, "proxy", "127.0.0.1")
	proxy.TLS = &tls.Config{Certificates: []tls.Certificate{pair.TLS(t)}}
	proxy.StartTLS()
	defer proxy.Close()
	proxyHost := strings.TrimPrefix(proxy.URL, "https://")

	tr := tlsTransport(ca)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	resp, err := hc.Post(proxy.URL+"/v2/tls/proxied/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != 202 || !strings.HasPrefix(loc, proxy.URL+"/v2/tls/proxied/blobs/uploads/") {
		t.Fatalf("POST through the proxy: %d, Location %q, want it under %s", resp.StatusCode, loc, proxy.URL)
	}
	pushPullGGCR(t, ctx, proxyHost+"/tls/proxied:v1", tr)

	// http.host wins over the request and the forwarding headers.
	byHost := testenv.StartRegistryd(t, registryConfig(inmemoryBackend(t), ""), "REGISTRY_HTTP_HOST=https://registry.example.com:8443")
	for _, hdr := range []map[string]string{nil, {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example.com"}} {
		req, _ := http.NewRequest(http.MethodPost, byHost.URL+"/v2/tls/host/blobs/uploads/", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != 202 || !strings.HasPrefix(loc, "https://registry.example.com:8443/v2/tls/host/blobs/uploads/") {
			t.Errorf("POST with headers %v: %d, Location %q, want it on http.host", hdr, resp.StatusCode, loc)
		}
	}
}

// pushPullGGCR pushes a random image to ref with go-containerregistry over tr, pulls it
// back and reads every layer (the client verifies each digest), and returns the image.
func pushPullGGCR(t *testing.T, ctx context.Context, ref string, tr http.RoundTripper) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(300<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithTransport(tr)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	got, err := remote.Image(r, remote.WithContext(ctx), remote.WithTransport(tr))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if gd := mustDigest(t, got); gd != mustDigest(t, img) {
		t.Fatalf("pull %s: digest %s, pushed %s", ref, gd, mustDigest(t, img))
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("pull %s: layer: %v", ref, err)
		}
	}
	return img
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(fmt.Errorf("image digest: %w", err))
	}
	return d
}

// TestTLSMisconfigured starts registryd with invalid TLS settings: it must exit with an
// error naming the key at fault, without serving.
func TestTLSMisconfigured(t *testing.T) {
	if testing.Short() {
		t.Skip("runs registryd")
	}
	bin := testenv.RegistrydBinary(t)
	ca := testenv.NewCA(t, "registryd e2e CA")
	dir := t.TempDir()
	cert, key := ca.Server(t, "a", "127.0.0.1").WriteFiles(t, dir, "a.crt", "a.key")
	_, otherKey := ca.Server(t, "b", "127.0.0.1").WriteFiles(t, dir, "b.crt", "b.key")
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"missing certificate", []string{"REGISTRY_HTTP_TLS_CERTIFICATE=" + missing, "REGISTRY_HTTP_TLS_KEY=" + key}, "http.tls.certificate"},
		{"missing key", []string{"REGISTRY_HTTP_TLS_CERTIFICATE=" + cert, "REGISTRY_HTTP_TLS_KEY=" + missing}, "http.tls.key"},
		{"key of another certificate", []string{"REGISTRY_HTTP_TLS_CERTIFICATE=" + cert, "REGISTRY_HTTP_TLS_KEY=" + otherKey}, "http.tls.key"},
		{"unknown minimumtls", []string{"REGISTRY_HTTP_TLS_CERTIFICATE=" + cert, "REGISTRY_HTTP_TLS_KEY=" + key, "REGISTRY_HTTP_TLS_MINIMUMTLS=tls1.1"}, "http.tls.minimumtls"},
		{"missing client CA", []string{"REGISTRY_HTTP_TLS_CERTIFICATE=" + cert, "REGISTRY_HTTP_TLS_KEY=" + key, "REGISTRY_HTTP_TLS_CLIENTCAS=" + missing}, "http.tls.clientcas[0]"},
		{"http.host without scheme", []string{"REGISTRY_HTTP_HOST=registry.example.com"}, "http.host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve")
			cmd.Dir = t.TempDir()
			cmd.Env = append([]string{"REGISTRY_STORAGE_INMEMORY=", "REGISTRY_HTTP_ADDR=127.0.0.1:0"}, tc.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "config: "+tc.want+":") {
				t.Fatalf("registryd serve: %v (%v): %s; want a failure naming %s", err, ctx.Err(), out, tc.want)
			}
		})
	}
}

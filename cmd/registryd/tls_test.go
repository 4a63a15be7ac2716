package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/internal/testenv"
)

func TestNewTLSConfigErrors(t *testing.T) {
	ca := testenv.NewCA(t, "test CA")
	dir := t.TempDir()
	cert, key := ca.Server(t, "a", "127.0.0.1").WriteFiles(t, dir, "a.crt", "a.key")
	_, otherKey := ca.Server(t, "b", "127.0.0.1").WriteFiles(t, dir, "b.crt", "b.key")
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		tls  config.TLS
		want string
	}{
		{"missing certificate file", config.TLS{Certificate: missing, Key: key}, "http.tls.certificate"},
		{"missing key file", config.TLS{Certificate: cert, Key: missing}, "http.tls.key"},
		{"no certificate in the certificate file", config.TLS{Certificate: key, Key: key}, "http.tls.certificate"},
		{"key of another certificate", config.TLS{Certificate: cert, Key: otherKey}, "http.tls.key"},
		{"certificate as the key", config.TLS{Certificate: cert, Key: cert}, "http.tls.key"},
		{"missing client CA file", config.TLS{Certificate: cert, Key: key, ClientCAs: []string{missing}}, "http.tls.clientcas[0]"},
		{"client CA file without a certificate", config.TLS{Certificate: cert, Key: key, ClientCAs: []string{caFile, key}}, "http.tls.clientcas[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newTLSConfig(config.HTTP{TLS: tc.tls}, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), "config: "+tc.want+":") {
				t.Fatalf("newTLSConfig = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	if _, err := newTLSConfig(config.HTTP{TLS: config.TLS{Certificate: missing, Key: key}}, slog.New(slog.DiscardHandler)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want it to wrap os.ErrNotExist", err)
	}

	for _, tc := range []struct {
		tls        config.TLS
		minVersion uint16
		clientAuth tls.ClientAuthType
	}{
		{config.TLS{Certificate: cert, Key: key}, tls.VersionTLS12, tls.NoClientCert},
		{config.TLS{Certificate: cert, Key: key, MinimumTLS: "tls1.2"}, tls.VersionTLS12, tls.NoClientCert},
		{config.TLS{Certificate: cert, Key: key, MinimumTLS: "tls1.3", ClientCAs: []string{caFile}}, tls.VersionTLS13, tls.RequireAndVerifyClientCert},
	} {
		tc2, err := newTLSConfig(config.HTTP{TLS: tc.tls}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if tc2.MinVersion != tc.minVersion || tc2.ClientAuth != tc.clientAuth || (tc2.ClientCAs != nil) != (tc.clientAuth != tls.NoClientCert) {
			t.Errorf("%+v: MinVersion %x ClientAuth %v, want %x %v", tc.tls, tc2.MinVersion, tc2.ClientAuth, tc.minVersion, tc.clientAuth)
		}
	}
	if c, err := newTLSConfig(config.HTTP{}, nil); c != nil || err != nil {
		t.Errorf("TLS off: %v, %v; want nil, nil", c, err)
	}
}

// servedCN returns the common name of the certificate GetCertificate serves now.
func servedCN(t *testing.T, r *certReloader) string {
	t.Helper()
	c, err := r.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.Subject.CommonName
}

// waitCN calls GetCertificate (as handshakes do) until it serves want.
func waitCN(t *testing.T, r *certReloader, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := servedCN(t, r)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serving %q, want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCertReloaderRewrittenFiles(t *testing.T) {
	ca := testenv.NewCA(t, "test CA")
	dir := t.TempDir()
	one, two := ca.Server(t, "one", "127.0.0.1"), ca.Server(t, "two", "127.0.0.1")
	certPath, keyPath := one.WriteFiles(t, dir, "tls.crt", "tls.key")
	const interval = 20 * time.Millisecond
	r, err := newCertReloader(certPath, keyPath, interval, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := servedCN(t, r); got != "one" {
		t.Fatalf("serving %q, want one", got)
	}
	// Half-way through a rotation (new certificate, old key) the old pair stays.
	if err := os.WriteFile(certPath, two.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * interval)
	for range 3 {
		if got := servedCN(t, r); got != "one" {
			t.Fatalf("mismatched pair on disk: serving %q, want the previous pair (one)", got)
		}
		time.Sleep(interval)
	}
	if err := os.WriteFile(keyPath, two.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	waitCN(t, r, "two")
	// Files that disappear keep the last good pair in service.
	if err := os.Remove(certPath); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * interval)
	if got := servedCN(t, r); got != "two" {
		t.Fatalf("certificate file removed: serving %q, want two", got)
	}
}

// TestCertReloaderSecretVolume rotates the pair the way the kubelet updates a Secret
// volume: the files are symlinks through ..data, a symlink to a timestamped directory,
// and a new directory is swapped in by renaming a new ..data over the old one.
func TestCertReloaderSecretVolume(t *testing.T) {
	ca := testenv.NewCA(t, "test CA")
	vol := t.TempDir()
	publish := func(ts string, kp testenv.KeyPair) {
		t.Helper()
		d := filepath.Join(vol, ts)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		kp.WriteFiles(t, d, "tls.crt", "tls.key")
		tmp := filepath.Join(vol, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("..2026_01_01_00_00_00.1", ca.Server(t, "first", "127.0.0.1"))
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(vol, f)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := newCertReloader(filepath.Join(vol, "tls.crt"), filepath.Join(vol, "tls.key"), 10*time.Millisecond, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := servedCN(t, r); got != "first" {
		t.Fatalf("serving %q, want first", got)
	}
	publish("..2026_01_02_00_00_00.2", ca.Server(t, "second", "127.0.0.1"))
	if err := os.RemoveAll(filepath.Join(vol, "..2026_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitCN(t, r, "second")
}

// TestServeTLS runs serve with http.tls and checks what clients negotiate: HTTP/2 over
// TLS 1.2 or 1.3, TLS 1.1 refused, TLS 1.2 refused under minimumtls tls1.3, and under
// mutual TLS a client without a certificate (or with one of another CA) refused.
func TestServeTLS(t *testing.T) {
	ca := testenv.NewCA(t, "test CA")
	clientCA := testenv.NewCA(t, "client CA")
	dir := t.TempDir()
	cert, key := ca.Server(t, "server", "127.0.0.1").WriteFiles(t, dir, "tls.crt", "tls.key")
	clientCAFile := filepath.Join(dir, "clientca.pem")
	if err := os.WriteFile(clientCAFile, clientCA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	good := clientCA.Client(t, "client").TLS(t)
	stranger := ca.Client(t, "stranger").TLS(t)

	type attempt struct {
		name        string
		min, max    uint16
		clientCert  *tls.Certificate
		suites      []uint16 // offered by the client (TLS 1.2)
		wantRefused bool
		wantHTTP1   bool
	}
	for _, tc := range []struct {
		name     string
		env      []string
		attempts []attempt
	}{
		{"default", nil, []attempt{
			{name: "TLS 1.3", min: tls.VersionTLS13, max: tls.VersionTLS13},
			{name: "TLS 1.2", min: tls.VersionTLS12, max: tls.VersionTLS12},
			{name: "TLS 1.1", min: tls.VersionTLS11, max: tls.VersionTLS11, wantRefused: true},
			{name: "TLS 1.0", min: tls.VersionTLS10, max: tls.VersionTLS10, wantRefused: true},
		}},
		{"minimumtls tls1.3", []string{"REGISTRY_HTTP_TLS_MINIMUMTLS=tls1.3"}, []attempt{
			{name: "TLS 1.3", min: tls.VersionTLS13, max: tls.VersionTLS13},
			{name: "TLS 1.2", min: tls.VersionTLS12, max: tls.VersionTLS12, wantRefused: true},
		}},
		{"clientcas", []string{"REGISTRY_HTTP_TLS_CLIENTCAS=" + clientCAFile}, []attempt{
			{name: "client certificate", clientCert: &good},
			{name: "client certificate over TLS 1.2", min: tls.VersionTLS12, max: tls.VersionTLS12, clientCert: &good},
			{name: "no client certificate", wantRefused: true},
			{name: "certificate of another CA", clientCert: &stranger, wantRefused: true},
		}},
		{"http2 disabled", []string{"REGISTRY_HTTP_HTTP2_DISABLED=true"}, []attempt{
			{name: "TLS 1.3", wantHTTP1: true},
		}},
		{"ciphersuites", []string{"REGISTRY_HTTP_TLS_CIPHERSUITES=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}, []attempt{
			{name: "the configured suite", min: tls.VersionTLS12, max: tls.VersionTLS12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
			{name: "another suite", min: tls.VersionTLS12, max: tls.VersionTLS12, suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, wantRefused: true},
			{name: "TLS 1.3 suites are not restricted", min: tls.VersionTLS13},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveTLS(t, cert, key, tc.env...)
			for _, a := range tc.attempts {
				tlsc := &tls.Config{RootCAs: ca.Pool(), MinVersion: a.min, MaxVersion: a.max, CipherSuites: a.suites}
				if a.clientCert != nil {
					tlsc.Certificates = []tls.Certificate{*a.clientCert}
				}
				// Refusals are checked over HTTP/1.1: an HTTP/2 server also drops TLS
				// below 1.2 after the handshake, which would hide a handshake that passed.
				client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsc, ForceAttemptHTTP2: !a.wantRefused}}
				resp, err := client.Get("https://" + addr + "/v2/")
				if a.wantRefused {
					if err == nil {
						resp.Body.Close()
						t.Errorf("%s: %d over %s, want the connection refused", a.name, resp.StatusCode, tls.VersionName(resp.TLS.Version))
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", a.name, err)
					continue
				}
				resp.Body.Close()
				if a.wantHTTP1 {
					if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 || resp.TLS.NegotiatedProtocol == "h2" {
						t.Errorf("%s: %d %s (ALPN %q), want 200 over HTTP/1.1", a.name, resp.StatusCode, resp.Proto, resp.TLS.NegotiatedProtocol)
					}
				} else if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.TLS.NegotiatedProtocol != "h2" {
					t.Errorf("%s: %d %s (ALPN %q), want 200 over HTTP/2", a.name, resp.StatusCode, resp.Proto, resp.TLS.NegotiatedProtocol)
				}
				if len(a.suites) > 0 && resp.TLS.CipherSuite != a.suites[0] {
					t.Errorf("%s: cipher suite %s", a.name, tls.CipherSuiteName(resp.TLS.CipherSuite))
				}
				if a.max != 0 && resp.TLS.Version != a.max {
					t.Errorf("%s: negotiated %s", a.name, tls.VersionName(resp.TLS.Version))
				}
			}
			// An HTTP/1.1-only client is served too.
			tlsc := &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}, Certificates: []tls.Certificate{good}}
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsc}}
			resp, err := client.Get("https://" + addr + "/v2/")
			if err != nil {
				t.Fatalf("HTTP/1.1 client: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 {
				t.Errorf("HTTP/1.1 client: %d %s", resp.StatusCode, resp.Proto)
			}
		})
	}
}

// TestServeRefusesBadTLS checks that serve stops before listening on an invalid key pair.
func TestServeRefusesBadTLS(t *testing.T) {
	ca := testenv.NewCA(t, "test CA")
	dir := t.TempDir()
	cert, _ := ca.Server(t, "a", "127.0.0.1").WriteFiles(t, dir, "a.crt", "a.key")
	_, otherKey := ca.Server(t, "b", "127.0.0.1").WriteFiles(t, dir, "b.crt", "b.key")
	cfg, err := config.Load(nil, []string{"REGISTRY_STORAGE_INMEMORY=", "REGISTRY_HTTP_ADDR=" + freeAddr(t),
		"REGISTRY_HTTP_TLS_CERTIFICATE=" + cert, "REGISTRY_HTTP_TLS_KEY=" + otherKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := serve(ctx, cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "http.tls.key") {
		t.Fatalf("serve = %v, want an error naming http.tls.key", err)
	}
}

// serveTLS runs serve on a free loopback address with in-memory storage, the key pair
// cert and key, and the extra REGISTRY_* settings env, until the test ends; it returns the
// address once it listens.
func serveTLS(t *testing.T, cert, key string, env ...string) string {
	t.Helper()
	addr := freeAddr(t)
	cfg, err := config.Load(nil, append([]string{"REGISTRY_STORAGE_INMEMORY=", "REGISTRY_HTTP_ADDR=" + addr,
		"REGISTRY_HTTP_TLS_CERTIFICATE=" + cert, "REGISTRY_HTTP_TLS_KEY=" + key,
		"REGISTRY_HTTP_SECRET=0123456789abcdef0123"}, env...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	waitListening(t, addr)
	return addr
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("%s not listening: %w", addr, err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClientCAsReloaded swaps the http.tls.clientcas file under a serving listener: a
// client of the new CA is accepted, one of the old CA refused, without a restart; a
// broken file keeps the last good pool.
func TestClientCAsReloaded(t *testing.T) {
	ca := testenv.NewCA(t, "server CA")
	oldCA, newCA := testenv.NewCA(t, "old client CA"), testenv.NewCA(t, "new client CA")
	dir := t.TempDir()
	cert, key := ca.Server(t, "server", "127.0.0.1").WriteFiles(t, dir, "tls.crt", "tls.key")
	caFile := filepath.Join(dir, "clientca.pem")
	if err := os.WriteFile(caFile, oldCA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	tc, err := newTLSConfig(config.HTTP{TLS: config.TLS{Certificate: cert, Key: key, ClientCAs: []string{caFile}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{TLSConfig: tc, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = serveListener(srv, l) }()
	t.Cleanup(func() { srv.Close() })

	accepted := func(kp testenv.KeyPair) bool {
		tlsc := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{kp.TLS(t)}}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsc, DisableKeepAlives: true}}
		resp, err := client.Get("https://" + l.Addr().String() + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	oldClient, newClient := oldCA.Client(t, "old"), newCA.Client(t, "new")
	if !accepted(oldClient) || accepted(newClient) {
		t.Fatal("before the swap: want the old CA's client accepted and the new CA's refused")
	}
	if err := os.WriteFile(caFile, newCA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !accepted(newClient) {
		if time.Now().After(deadline) {
			t.Fatal("the new CA's client is still refused after the swap")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if accepted(oldClient) {
		t.Error("after the swap the old CA's client is still accepted")
	}
	if err := os.WriteFile(caFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * certCheckInterval)
	if !accepted(newClient) || accepted(oldClient) {
		t.Error("a broken client CA file: want the last good pool kept")
	}
}

// TestSelftestMutualTLS runs the self-test (the chart's helm test) against registryd under
// mutual TLS: with -cert/-key it pushes and pulls; without them it fails.
func TestSelftestMutualTLS(t *testing.T) {
	ca, clientCA := testenv.NewCA(t, "test CA"), testenv.NewCA(t, "client CA")
	dir := t.TempDir()
	cert, key := ca.Server(t, "server", "127.0.0.1").WriteFiles(t, dir, "tls.crt", "tls.key")
	clientCert, clientKey := clientCA.Client(t, "selftest").WriteFiles(t, dir, "client.crt", "client.key")
	clientCAFile := filepath.Join(dir, "clientca.pem")
	if err := os.WriteFile(clientCAFile, clientCA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, cert, key, "REGISTRY_HTTP_TLS_CLIENTCAS="+clientCAFile)
	ctx := context.Background()
	noEnv := func(string) string { return "" }
	var out strings.Builder
	if err := runSelftest(ctx, []string{"-insecure", "-cert", clientCert, "-key", clientKey, "https://" + addr}, &out, noEnv); err != nil {
		t.Fatalf("selftest with a client certificate: %v", err)
	}
	if err := runSelftest(ctx, []string{"-insecure", "-timeout", "10s", "https://" + addr}, &out, noEnv); err == nil {
		t.Error("selftest without a client certificate passed under mutual TLS")
	}
	if err := runSelftest(ctx, []string{"-insecure", "-cert", clientCert, "https://" + addr}, &out, noEnv); err == nil {
		t.Error("selftest with -cert but no -key passed")
	}
}

package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// KubeAPIServer is a real Kubernetes API server (kube-apiserver built by install-tools.sh) on
// its own etcd (Debian's etcd-server), with no controller-manager, scheduler or kubelet:
// objects are validated, defaulted and stored, pods are not created.
type KubeAPIServer struct {
	*Process
	// URL is the API server's https address.
	URL string
	// Token is a bearer token of a system:masters user.
	Token string
	// Kubeconfig is a kubeconfig file for helm and kubectl with that token.
	Kubeconfig string
	// Took is how long the start took, until /readyz answered ok.
	Took time.Duration
}

// etcdBinary returns Debian's etcd, failing the test when it is not installed.
func etcdBinary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{filepath.Join(ToolsDir(), "bin", "etcd"), "/usr/bin/etcd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("etcd not installed: run scripts/install-tools.sh debian (package etcd-server)")
	return ""
}

// StartKubeAPIServer starts etcd and kube-apiserver on free loopback ports, with a
// service-account signing key and a token file made for the test, and waits until the API
// server's /readyz answers ok (about 20 s on an idle machine). Both stop at cleanup.
func StartKubeAPIServer(t testing.TB) *KubeAPIServer {
	t.Helper()
	start := time.Now()
	apiserver := Tool(t, "kube-apiserver")
	etcd := etcdBinary(t)
	dir := t.TempDir()

	clientPort, peerPort := FreePort(t), FreePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	Start(t, Spec{
		Name: "etcd", Path: etcd, Addr: fmt.Sprintf("127.0.0.1:%d", clientPort),
		Args: []string{"--name", "default", "--data-dir", filepath.Join(dir, "etcd"),
			"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "default=" + peerURL, "--log-level", "warn"},
		Ready: httpOK(etcdURL+"/health", ""),
	})

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, pubFile := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	writeFile(t, pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	tok := make([]byte, 24)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	tokenFile := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokenFile, []byte(token+",admin,admin,system:masters\n"))

	port := FreePort(t)
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	p := Start(t, Spec{
		Name: "kube-apiserver", Path: apiserver, Addr: fmt.Sprintf("127.0.0.1:%d", port),
		Args: []string{"--etcd-servers", etcdURL, "--secure-port", fmt.Sprint(port), "--bind-address", "127.0.0.1",
			"--cert-dir", filepath.Join(dir, "certs"), "--token-auth-file", tokenFile,
			"--authorization-mode", "RBAC", "--service-account-issuer", "https://kubernetes.default.svc",
			"--service-account-key-file", pubFile, "--service-account-signing-key-file", keyFile,
			"--service-cluster-ip-range", "10.96.0.0/16", "--v", "0"},
		Ready:        httpOK(url+"/readyz", token),
		ReadyTimeout: 3 * time.Minute,
	})
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeFile(t, kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context:
    cluster: test
    user: admin
    namespace: default
current-context: test
`, url, token)))
	return &KubeAPIServer{Process: p, URL: url, Token: token, Kubeconfig: kubeconfig, Took: time.Since(start)}
}

// httpOK is a Ready check: GET url (with a bearer token when given) answers 200.
func httpOK(url, token string) func(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the API server's self-signed certificate, on loopback
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

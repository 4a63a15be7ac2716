package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TLSOptions configures StartRegistrydTLS.
type TLSOptions struct {
	// NetNS, when set, runs registryd inside that network namespace, listening on its
	// address (NetNS.IP); otherwise registryd listens on 127.0.0.1.
	NetNS *NetNS
	// Client is what the readiness check connects with: it must trust the server's
	// certificate, and carry a client certificate when the registry asks for one.
	Client *tls.Config
}

// StartRegistrydTLS is StartRegistryd for a config that serves HTTPS (http.tls set in
// config or env). It listens on a free port of 127.0.0.1, or of o.NetNS.IP inside
// o.NetNS, is ready when GET https://…/v2/ answers (from the test's own namespace), and
// its URL is "https://<ip>:<port>". It is stopped through its process group at cleanup.
func StartRegistrydTLS(t testing.TB, config string, o TLSOptions, env ...string) *Registryd {
	t.Helper()
	bin := RegistrydBinary(t)
	addr := Addr(FreePort(t))
	if o.NetNS != nil {
		addr = o.NetNS.Addr()
	}
	env = append(env, "REGISTRY_HTTP_ADDR="+addr)
	config = strings.ReplaceAll(config, "{{ADDR}}", addr)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: o.Client.Clone()}}
	path, args := bin, []string{"serve", cfgPath}
	if o.NetNS != nil {
		path, args = o.NetNS.Command(bin, args...)
	}
	p := Start(t, Spec{
		Name: "registryd",
		Path: path,
		Args: args,
		Env:  env,
		Dir:  dir,
		Addr: addr,
		Ready: func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v2/", nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				return fmt.Errorf("GET https://%s/v2/: %d", addr, resp.StatusCode)
			}
			return nil
		},
	})
	t.Cleanup(client.CloseIdleConnections)
	return &Registryd{Process: p, URL: "https://" + addr, Host: addr, ConfigPath: cfgPath}
}

// certsDir is where the Docker engine looks for per-registry CAs and client certificates
// (not configurable for a rootful dockerd).
const certsDir = "/etc/docker/certs.d"

// TrustRegistry makes the engine trust caPEM for registry hostport (host:port), by
// writing <certs.d>/<hostport>/ca.crt, and removes that directory (and the parents it
// created) when the test ends. The engine reads the directory on every pull and push.
func (d *Dockerd) TrustRegistry(t testing.TB, hostport string, caPEM []byte) {
	t.Helper()
	d.writeCertsFile(t, hostport, "ca.crt", caPEM, 0o644)
}

// ClientCertificate gives the engine a client certificate for registry hostport (mutual
// TLS): <certs.d>/<hostport>/client.cert and client.key, removed when the test ends.
func (d *Dockerd) ClientCertificate(t testing.TB, hostport string, certPEM, keyPEM []byte) {
	t.Helper()
	d.writeCertsFile(t, hostport, "client.cert", certPEM, 0o644)
	d.writeCertsFile(t, hostport, "client.key", keyPEM, 0o600)
}

func (d *Dockerd) writeCertsFile(t testing.TB, hostport, name string, b []byte, mode os.FileMode) {
	t.Helper()
	if _, _, err := net.SplitHostPort(hostport); err != nil || strings.ContainsAny(hostport, "/\\") {
		t.Fatalf("registry %q: want host:port", hostport)
	}
	dir := filepath.Join(certsDir, hostport)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		// Remove what this creates, deepest first, at the end; leave what was there.
		var created []string
		for p := dir; p != "/"; p = filepath.Dir(p) {
			if _, err := os.Stat(p); err == nil {
				break
			}
			created = append(created, p)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("docker certs.d: %v", err)
		}
		t.Cleanup(func() {
			if err := os.RemoveAll(dir); err != nil {
				t.Logf("remove %s: %v", dir, err)
			}
			for _, p := range created[1:] {
				_ = os.Remove(p) // only when empty: another test may use it meanwhile
			}
		})
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, mode); err != nil {
		t.Fatalf("docker certs.d: %v", err)
	}
}

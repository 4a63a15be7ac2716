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
	// IP is the address to listen on (default 127.0.0.1).
	IP string
	// Client is what the readiness check connects with: it must trust the server's
	// certificate, and carry a client certificate when the registry asks for one.
	Client *tls.Config
}

// StartRegistrydTLS is StartRegistryd for a config that serves HTTPS (http.tls set in
// config or env). It listens on a free port of o.IP, is ready when GET https://…/v2/
// answers, and its URL is "https://<ip>:<port>".
func StartRegistrydTLS(t testing.TB, config string, o TLSOptions, env ...string) *Registryd {
	t.Helper()
	ip := o.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	bin := RegistrydBinary(t)
	env = append(env, "REGISTRY_HTTP_ADDR="+addr)
	config = strings.ReplaceAll(config, "{{ADDR}}", addr)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: o.Client.Clone()}}
	p := Start(t, Spec{
		Name: "registryd",
		Path: bin,
		Args: []string{"serve", cfgPath},
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

// LocalIP returns an IPv4 address of this machine outside 127.0.0.0/8, for servers that
// a client must not treat as a loopback registry (the Docker engine uses plain HTTP and
// skips certificate checks for 127.0.0.0/8). It fails the test when there is none.
func LocalIP(t testing.TB) string {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				return n.IP.String()
			}
		}
	}
	t.Fatal("no IPv4 address outside 127.0.0.0/8 on an up interface: the TLS test of the Docker engine needs one")
	return ""
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

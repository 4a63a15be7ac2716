package e2e

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/registryd/registryd/internal/testenv"
)

// misconfig is a broken storage section and the driver error class the log must name.
type misconfig struct {
	name    string
	storage string
	logs    string // a fragment the registry log must contain
}

// misconfigs returns, per cloud backend, storage sections with wrong credentials, a
// missing bucket/container and an unreachable endpoint.
func misconfigs(t *testing.T) map[string][]misconfig {
	closed := "http://" + testenv.Addr(testenv.FreePort(t))
	a := testenv.StartAzurite(t)
	container := a.NewContainer(t)
	az := func(key, container, url string) string {
		return fmt.Sprintf("  azure:\n    accountname: %s\n    accountkey: %q\n    container: %s\n    serviceurl: %s\n", a.Account, key, container, url)
	}
	wrongKey := strings.Repeat("A", 86) + "=="
	m := map[string][]misconfig{
		"azure": {
			{"wrong key", az(wrongKey, container, a.ServiceURL), "backend denied access"},
			{"missing container", az(a.Key, "no-such-container", a.ServiceURL), "backend misconfigured"},
			{"unreachable", az(a.Key, container, closed+"/"+a.Account), "backend unavailable"},
		},
	}
	for k, v := range moreMisconfigs(t, closed) {
		m[k] = v
	}
	return m
}

// TestMisconfiguredBackend: a registry whose backend is misconfigured answers 500 UNKNOWN
// on pull and push — never 404 — reports not ready, and logs the cause.
func TestMisconfiguredBackend(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	body := `{"schemaVersion":2,"config":{"mediaType":"a","digest":"` + digest + `","size":1},"layers":[]}`
	bodyDigest := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(body)))
	for backend, cases := range misconfigs(t) {
		for _, mc := range cases {
			t.Run(backend+"/"+mc.name, func(t *testing.T) {
				reg := testenv.StartRegistryd(t, registryConfig(mc.storage, ""), "REGISTRY_STORAGE_RETRY_MAXATTEMPTS=1")
				for _, rq := range []struct{ method, path string }{
					{"GET", "/v2/app/manifests/latest"},
					{"HEAD", "/v2/app/manifests/latest"},
					{"GET", "/v2/app/blobs/" + digest},
					{"HEAD", "/v2/app/blobs/" + digest},
					{"GET", "/v2/app/tags/list"},
					{"GET", "/v2/_catalog"},
					{"POST", "/v2/app/blobs/uploads/"},
					{"POST", "/v2/app/blobs/uploads/?digest=" + bodyDigest},
					{"PUT", "/v2/app/manifests/v1"},
				} {
					req, _ := http.NewRequest(rq.method, reg.URL+rq.path, strings.NewReader(body))
					req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
					c := &http.Client{Timeout: 90 * time.Second}
					resp, err := c.Do(req)
					if err != nil {
						t.Fatalf("%s %s: %v", rq.method, rq.path, err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 500 {
						t.Errorf("%s %s: status %d, want 500 (%s)", rq.method, rq.path, resp.StatusCode, body)
					}
					if rq.method != "HEAD" && !strings.Contains(string(body), `"code":"UNKNOWN"`) {
						t.Errorf("%s %s: body %s, want UNKNOWN", rq.method, rq.path, body)
					}
				}
				resp, err := http.Get(reg.URL + "/readyz")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 503 {
					t.Errorf("/readyz: %d, want 503", resp.StatusCode)
				}
				if out := reg.Output(); !strings.Contains(out, mc.logs) || !strings.Contains(out, `"level":"ERROR"`) {
					t.Errorf("log lacks an error line naming %q:\n%s", mc.logs, out[:min(len(out), 3000)])
				}
			})
		}
	}
}

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/internal/testenv"
)

// cli runs a registry client CLI hermetically: a private HOME (so no user or machine
// configuration takes part) and dir as working directory.
type cli struct {
	bin, home, dir string
}

func newCLI(t *testing.T, name string) *cli {
	t.Helper()
	return &cli{bin: testenv.Tool(t, name), home: t.TempDir(), dir: t.TempDir()}
}

// run runs the CLI with args and returns stdout; a failure fails the test with both outputs.
func (c *cli) run(t *testing.T, ctx context.Context, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.home, "TMPDIR=" + os.TempDir(), "DOCKER_CONFIG=" + filepath.Join(c.home, ".docker")}
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", filepath.Base(c.bin), strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

// writeFile writes b to name in the CLI's working directory.
func (c *cli) writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestClientCLIs pushes and pulls with the oras, regctl and helm command-line clients on
// every backend: oras pushes an artifact whose file spans several parts, pulls it back,
// attaches a referrer and discovers it; regctl copies the artifact with its referrers into
// another repository (cross-repository mounts), pushes and fetches a blob, lists and
// deletes tags; helm pushes a packaged chart, pulls it and renders it from the registry.
// Every byte and manifest must come back as it went in.
func TestClientCLIs(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			reg := testenv.StartRegistryd(t, registryConfig(b.storage(t), ""))
			host := reg.Host

			// oras: push (POST then PUT with the body), pull, attach, discover.
			oras := newCLI(t, "oras")
			big, small := randomBytes(t, 11<<20+12345), []byte("hello from oras\n")
			oras.writeFile(t, "big.bin", big)
			oras.writeFile(t, "small.txt", small)
			ref := host + "/clients/oras:v1"
			oras.run(t, ctx, nil, "push", "--plain-http", "--artifact-type", "application/vnd.registryd.test",
				ref, "big.bin:application/octet-stream", "small.txt:text/plain")
			manifest := oras.run(t, ctx, nil, "manifest", "fetch", "--plain-http", ref)
			var m struct {
				ArtifactType string `json:"artifactType"`
				Layers       []struct {
					Digest string `json:"digest"`
					Size   int64  `json:"size"`
				} `json:"layers"`
			}
			if err := json.Unmarshal(manifest, &m); err != nil {
				t.Fatalf("manifest fetch: %v: %s", err, manifest)
			}
			if m.ArtifactType != "application/vnd.registryd.test" || len(m.Layers) != 2 {
				t.Fatalf("manifest fetch: artifactType %q, %d layers: %s", m.ArtifactType, len(m.Layers), manifest)
			}
			oras.run(t, ctx, nil, "pull", "--plain-http", "-o", "out", ref)
			for name, want := range map[string][]byte{"big.bin": big, "small.txt": small} {
				got, err := os.ReadFile(filepath.Join(oras.dir, "out", name))
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("oras pull %s: %d bytes (want %d), equal %v, %v", name, len(got), len(want), bytes.Equal(got, want), err)
				}
			}
			oras.writeFile(t, "sig.txt", []byte("signature"))
			oras.run(t, ctx, nil, "attach", "--plain-http", "--artifact-type", "application/vnd.registryd.sig", ref, "sig.txt:text/plain")
			discovered := oras.run(t, ctx, nil, "discover", "--plain-http", "--format", "json", ref)
			if !bytes.Contains(discovered, []byte("application/vnd.registryd.sig")) {
				t.Fatalf("oras discover does not list the attached referrer: %s", discovered)
			}

			// regctl: copy with referrers into another repository, then blobs and tags.
			regctl := newCLI(t, "regctl")
			regctl.run(t, ctx, nil, "registry", "set", "--tls", "disabled", host)
			dst := host + "/clients/regctl:copied"
			regctl.run(t, ctx, nil, "image", "copy", "--referrers", ref, dst)
			if got := regctl.run(t, ctx, nil, "manifest", "get", "--format", "raw-body", dst); !bytes.Equal(got, manifest) {
				t.Fatalf("regctl copy changed the manifest:\n%s\nwant:\n%s", got, manifest)
			}
			referrers := regctl.run(t, ctx, nil, "artifact", "list", "--format", "{{json .}}", dst)
			if !bytes.Contains(referrers, []byte("application/vnd.registryd.sig")) {
				t.Fatalf("regctl artifact list on the copy does not show the referrer: %s", referrers)
			}
			blob := randomBytes(t, 7<<20+3)
			want := digest.FromBytes(blob)
			out := strings.TrimSpace(string(regctl.run(t, ctx, blob, "blob", "put", host+"/clients/regctl")))
			if out != want.String() {
				t.Fatalf("regctl blob put printed %q, want %s", out, want)
			}
			if got := regctl.run(t, ctx, nil, "blob", "get", host+"/clients/regctl", want.String()); !bytes.Equal(got, blob) {
				t.Fatalf("regctl blob get: %d bytes, want the %d pushed", len(got), len(blob))
			}
			regctl.run(t, ctx, nil, "image", "copy", ref, host+"/clients/regctl:second")
			tags := strings.Fields(string(regctl.run(t, ctx, nil, "tag", "ls", host+"/clients/regctl")))
			if slices.Sort(tags); !slices.Equal(tags, []string{"copied", "second"}) {
				t.Fatalf("regctl tag ls: %v, want [copied second]", tags)
			}
			regctl.run(t, ctx, nil, "tag", "delete", dst)
			tags = strings.Fields(string(regctl.run(t, ctx, nil, "tag", "ls", host+"/clients/regctl")))
			if !slices.Equal(tags, []string{"second"}) {
				t.Fatalf("regctl tag ls after deleting copied: %v, want [second]", tags)
			}
			if got := regctl.run(t, ctx, nil, "manifest", "get", "--format", "raw-body", host+"/clients/regctl:second"); !bytes.Equal(got, manifest) {
				t.Fatalf("the remaining tag's manifest changed: %s", got)
			}

			// helm: push a packaged chart as an OCI artifact, pull it back, render it.
			helm := newCLI(t, "helm")
			helm.writeFile(t, "Chart.yaml", []byte("apiVersion: v2\nname: demo\nversion: 0.1.0\n"))
			helm.writeFile(t, "values.yaml", []byte("replicas: 3\n"))
			if err := os.Mkdir(filepath.Join(helm.dir, "templates"), 0o755); err != nil {
				t.Fatal(err)
			}
			helm.writeFile(t, "templates/cm.yaml", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  replicas: \"{{ .Values.replicas }}\"\n"))
			helm.run(t, ctx, nil, "package", ".", "-d", "pkg")
			packaged, err := os.ReadFile(filepath.Join(helm.dir, "pkg", "demo-0.1.0.tgz"))
			if err != nil {
				t.Fatal(err)
			}
			charts := "oci://" + host + "/clients/charts"
			helm.run(t, ctx, nil, "push", "pkg/demo-0.1.0.tgz", charts, "--plain-http")
			if err := os.Mkdir(filepath.Join(helm.dir, "pulled"), 0o755); err != nil {
				t.Fatal(err)
			}
			helm.run(t, ctx, nil, "pull", charts+"/demo", "--version", "0.1.0", "--plain-http", "-d", "pulled")
			if got, err := os.ReadFile(filepath.Join(helm.dir, "pulled", "demo-0.1.0.tgz")); err != nil || !bytes.Equal(got, packaged) {
				t.Fatalf("helm pull: %d bytes (want the %d pushed), %v", len(got), len(packaged), err)
			}
			if out := helm.run(t, ctx, nil, "template", "demo", charts+"/demo", "--version", "0.1.0", "--plain-http"); !bytes.Contains(out, []byte(`replicas: "3"`)) {
				t.Fatalf("helm template of the pulled chart:\n%s", out)
			}
		})
	}
}

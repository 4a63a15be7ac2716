package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// fsckRun runs "registryd fsck --json" with args on config and returns the keys of its
// findings (sorted), its summary line and its exit status.
func fsckRun(t *testing.T, ctx context.Context, bin, config string, args ...string) ([]string, map[string]any, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, append(append([]string{"fsck", "--json"}, args...), config)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	keys := []string{}
	var summary map[string]any
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var line struct {
			Kind       string         `json:"kind"`
			Repository string         `json:"repository"`
			Tag        string         `json:"tag"`
			Manifest   string         `json:"manifest"`
			Digest     string         `json:"digest"`
			Repaired   bool           `json:"repaired"`
			Summary    map[string]any `json:"summary"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("fsck output line %q: %v", sc.Text(), err)
		}
		if line.Summary != nil {
			summary = line.Summary
			continue
		}
		k := line.Kind + " " + line.Repository + ":" + line.Tag + " m=" + line.Manifest + " d=" + line.Digest
		if line.Repaired {
			k += " repaired"
		}
		keys = append(keys, k)
	}
	if summary == nil && code != 2 {
		t.Fatalf("fsck printed no summary (exit %d)\nstdout: %s\nstderr: %s", code, stdout.Bytes(), stderr.Bytes())
	}
	slices.Sort(keys)
	return keys, summary, code
}

// TestFsck pushes images with crane (one in an index) and a referrer with oras to a
// filesystem registry, then breaks the store behind the registry's back: the data of an
// image manifest and of the referrer manifest deleted, a tag pointing at a manifest that
// was never pushed, a layer's bytes changed. fsck must find exactly those (the changed
// bytes only with --verify-digests), repair what it may, and a re-run must find nothing;
// the surviving images still pull.
func TestFsck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root := t.TempDir()
	reg := testenv.StartRegistryd(t, registryConfig("  filesystem:\n    rootdirectory: "+root+"\n", ""))
	bin := testenv.RegistrydBinary(t)
	host := reg.Host
	v2 := filepath.Join(root, "docker", "registry", "v2")
	blobData := func(d digest.Digest) string {
		return filepath.Join(v2, "blobs", "sha256", d.Encoded()[:2], d.Encoded(), "data")
	}

	crane := newCLI(t, "crane")
	oras := newCLI(t, "oras")
	var manifests []digest.Digest
	for _, repo := range []string{"fsck/a", "fsck/b"} {
		layer := filepath.Join(t.TempDir(), "layer.tar")
		writeRandomTar(t, layer, []int{64 << 10})
		crane.run(t, ctx, nil, "append", "--insecure", "--oci-empty-base", "-f", layer, "-t", host+"/"+repo+":v1")
		manifests = append(manifests, digest.Digest(strings.TrimSpace(string(crane.run(t, ctx, nil, "digest", "--insecure", host+"/"+repo+":v1")))))
	}
	crane.run(t, ctx, nil, "index", "append", "--insecure", "-m", host+"/fsck/a:v1", "-t", host+"/fsck/a:multi")
	oras.writeFile(t, "sig.txt", []byte("signature"))
	oras.run(t, ctx, nil, "attach", "--plain-http", "--artifact-type", "application/vnd.registryd.sig", host+"/fsck/a:v1", "sig.txt:text/plain")

	config := reg.ConfigPath
	if got, _, code := fsckRun(t, ctx, bin, config, "--verify-digests"); code != 0 || len(got) != 0 {
		t.Fatalf("fsck of the pushed registry: exit %d, findings %q", code, got)
	}

	// The referrer: the one record under fsck/a's _referrers.
	recs, err := filepath.Glob(filepath.Join(v2, "repositories", "fsck", "a", "_referrers", "sha256", "*", "sha256-*"))
	if err != nil || len(recs) != 1 {
		t.Fatalf("referrer records %v, %v", recs, err)
	}
	referrer := digest.Digest("sha256:" + strings.TrimPrefix(filepath.Base(recs[0]), "sha256-"))
	// fsck/a's layer: the manifest's last layer.
	var m struct {
		Layers []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"layers"`
	}
	body, err := os.ReadFile(blobData(manifests[0]))
	if err != nil || json.Unmarshal(body, &m) != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest of fsck/a: %v %s", err, body)
	}
	layerA := m.Layers[len(m.Layers)-1].Digest
	layerBytes, err := os.ReadFile(blobData(layerA))
	if err != nil {
		t.Fatal(err)
	}

	// Break it.
	ghost := digest.FromString("never pushed")
	for _, p := range []string{blobData(manifests[1]), blobData(referrer)} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	ghostLink := filepath.Join(v2, "repositories", "fsck", "a", "_manifests", "tags", "ghost", "current", "link")
	if err := os.MkdirAll(filepath.Dir(ghostLink), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ghostLink, []byte(ghost.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(layerBytes)
	corrupt[len(corrupt)/2] ^= 0xff
	if err := os.WriteFile(blobData(layerA), corrupt, 0o644); err != nil {
		t.Fatal(err)
	}

	broken := []string{
		"link-blob-missing fsck/a: m= d=" + referrer.String(),
		"link-blob-missing fsck/b: m= d=" + manifests[1].String(),
		"referrer-dangling fsck/a: m=" + referrer.String() + " d=" + manifests[0].String(),
		"tag-manifest-missing fsck/a:ghost m=" + ghost.String() + " d=",
		"tag-manifest-missing fsck/b:v1 m=" + manifests[1].String() + " d=",
	}
	slices.Sort(broken)
	got, summary, code := fsckRun(t, ctx, bin, config)
	if code != 1 || !slices.Equal(got, broken) {
		t.Fatalf("fsck: exit %d, findings\n got %q\nwant %q", code, got, broken)
	}
	if summary["repositories"] != float64(2) || summary["orphansChecked"] != true {
		t.Errorf("summary %v", summary)
	}
	withDigests := append(slices.Clone(broken), "digest-mismatch : m= d="+layerA.String())
	slices.Sort(withDigests)
	if got, _, code = fsckRun(t, ctx, bin, config, "--verify-digests"); code != 1 || !slices.Equal(got, withDigests) {
		t.Fatalf("fsck --verify-digests: exit %d, findings\n got %q\nwant %q", code, got, withDigests)
	}
	if got, _, code = fsckRun(t, ctx, bin, config, "--repos", "fsck/b"); code != 1 || len(got) != 2 {
		t.Errorf("fsck --repos fsck/b: exit %d, findings %q, want fsck/b's two", code, got)
	}
	// The bytes come back (fsck never repairs data); then the repair.
	if err := os.WriteFile(blobData(layerA), layerBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	repaired := make([]string, len(broken))
	for i, k := range broken {
		repaired[i] = k + " repaired"
	}
	if got, _, code = fsckRun(t, ctx, bin, config, "--repair", "--repair-tags"); code != 1 || !slices.Equal(got, repaired) {
		t.Fatalf("fsck --repair --repair-tags: exit %d, findings\n got %q\nwant %q", code, got, repaired)
	}
	if got, _, code = fsckRun(t, ctx, bin, config, "--verify-digests"); code != 0 || len(got) != 0 {
		t.Fatalf("fsck after the repair: exit %d, findings %q", code, got)
	}
	for _, ref := range []string{"fsck/a:v1", "fsck/a:multi"} {
		crane.run(t, ctx, nil, "pull", "--insecure", host+"/"+ref, strings.ReplaceAll(ref, "/", "_")+".tar")
	}
	out := crane.run(t, ctx, nil, "ls", "--insecure", host+"/fsck/a")
	if strings.Contains(string(out), "ghost") {
		t.Errorf("tags of fsck/a after the repair: %s", out)
	}
	if _, _, code = fsckRun(t, ctx, bin, filepath.Join(t.TempDir(), "missing.yml")); code != 2 {
		t.Errorf("fsck with a missing configuration file: exit %d, want 2", code)
	}
}

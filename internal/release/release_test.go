package release

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func testOptions(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	bin, certs := filepath.Join(dir, "registryd"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(bin, []byte("\x7fELF fake binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certs, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Options{Binary: bin, Version: "1.2.3", Revision: "abc", CACerts: certs, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func TestBuild(t *testing.T) {
	opts := testOptions(t)
	img, err := Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	if mt != types.OCIManifestSchema1 {
		t.Errorf("media type %s, want OCI", mt)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for what, got := range map[string]string{
		"user":       cf.Config.User,
		"entrypoint": cf.Config.Entrypoint[0],
		"os/arch":    cf.OS + "/" + cf.Architecture,
		"version":    cf.Config.Labels["org.opencontainers.image.version"],
		"revision":   cf.Config.Labels["org.opencontainers.image.revision"],
		"created":    cf.Config.Labels["org.opencontainers.image.created"],
	} {
		want := map[string]string{"user": "65532:65532", "entrypoint": "/registryd", "os/arch": "linux/amd64",
			"version": "1.2.3", "revision": "abc", "created": "2026-01-02T03:04:05Z"}[what]
		if got != want {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
	}
	for name, want := range map[string]int64{"registryd": 0o755, "tmp/": 0o1777, "etc/passwd": 0o644, "etc/ssl/certs/ca-certificates.crt": 0o644, "home/nonroot/": 0o700} {
		h, ok := files[name]
		if !ok {
			t.Errorf("layer lacks %s", name)
			continue
		}
		if h.Mode != want {
			t.Errorf("%s mode %o, want %o", name, h.Mode, want)
		}
	}
	if files["home/nonroot/"] != nil && files["home/nonroot/"].Uid != NonrootUID {
		t.Errorf("home/nonroot owned by %d", files["home/nonroot/"].Uid)
	}

	// Same inputs, same digest.
	again, err := Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds of the same inputs: %s and %s", d1, d2)
	}

	dir := t.TempDir()
	if err := WriteTarball(img, "registryd/registryd:1.2.3", filepath.Join(dir, "img.tar")); err != nil {
		t.Fatal(err)
	}
	back, err := tarball.ImageFromPath(filepath.Join(dir, "img.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// docker load's format records the config and layers; the manifest is rebuilt on load.
	c1, _ := img.ConfigName()
	if c, _ := back.ConfigName(); c != c1 {
		t.Errorf("tarball image config %s, want %s", c, c1)
	}
	if err := WriteLayout(img, "registryd/registryd:1.2.3", filepath.Join(dir, "oci")); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Image(d1); err != nil {
		t.Errorf("layout lacks the image: %v", err)
	}
}

func TestBuildRefuses(t *testing.T) {
	opts := testOptions(t)
	for name, mutate := range map[string]func(*Options){
		"no binary":       func(o *Options) { o.Binary = "" },
		"no version":      func(o *Options) { o.Version = "" },
		"missing binary":  func(o *Options) { o.Binary = "/nonexistent/registryd" },
		"missing CA file": func(o *Options) { o.CACerts = "/nonexistent/ca.crt" },
	} {
		o := opts
		mutate(&o)
		if _, err := Build(o); err == nil {
			t.Errorf("%s: Build succeeded", name)
		}
	}
}

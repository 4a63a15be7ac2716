package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/registryd/registryd/internal/testenv"
)

const ociRefNameAnnotation = "org.opencontainers.image.ref.name"

// skopeoCLI runs the skopeo CLI hermetically: its own accept-anything policy, an empty auth
// file and a private HOME, so nothing from the machine's containers config takes part.
type skopeoCLI struct {
	bin, home, policy, auth string
}

func newSkopeo(t *testing.T) *skopeoCLI {
	t.Helper()
	s := &skopeoCLI{bin: testenv.Tool(t, "skopeo"), home: t.TempDir()}
	s.policy = filepath.Join(s.home, "policy.json")
	s.auth = filepath.Join(s.home, "auth.json")
	if err := os.WriteFile(s.policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.auth, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs skopeo with args (after the global flags) and returns stdout.
func (s *skopeoCLI) run(t *testing.T, ctx context.Context, args ...string) []byte {
	t.Helper()
	full := append([]string{"--policy", s.policy, "--command-timeout", "60s"}, args...)
	cmd := exec.CommandContext(ctx, s.bin, full...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.home, "TMPDIR=" + os.TempDir(), "REGISTRY_AUTH_FILE=" + s.auth}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("skopeo %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

// randomOCIImage is a random image with OCI media types throughout (manifest, config, layers).
func randomOCIImage(t *testing.T, layerSizes ...int64) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, size := range layerSizes {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// TestSkopeo copies an OCI layout (one image tagged v1, one two-platform index tagged
// multi) into registryd with skopeo, inspects both there, copies them back out to a new
// OCI layout and requires the same manifest bytes, digests and blobs at every step.
func TestSkopeo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	reg := testenv.StartRegistryd(t, registryConfig(filesystemBackend(t), ""))
	sk := newSkopeo(t)

	img := randomOCIImage(t, 2<<20, 300<<10, 1<<10)
	src := filepath.Join(t.TempDir(), "src")
	lp, err := layout.Write(src, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{ociRefNameAnnotation: "v1"})); err != nil {
		t.Fatal(err)
	}
	// skopeo --all re-serializes an index with its own descriptor type (no artifactType,
	// digest before size), so the index is written in exactly that form: what skopeo
	// pushes is then byte-identical to the layout's index, and any change is registryd's.
	children := map[v1.Hash]v1.Image{}
	var idxManifest skopeoIndex
	idxManifest.SchemaVersion, idxManifest.MediaType = 2, types.OCIImageIndex
	for _, arch := range []string{"amd64", "arm64"} {
		child := randomOCIImage(t, 256<<10, 64<<10)
		cf, err := child.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		if child, err = mutate.ConfigFile(child, cf); err != nil {
			t.Fatal(err)
		}
		if err := lp.WriteImage(child); err != nil {
			t.Fatal(err)
		}
		d, _ := child.Digest()
		size, _ := child.Size()
		children[d] = child
		idxManifest.Manifests = append(idxManifest.Manifests, skopeoDescriptor{
			MediaType: types.OCIManifestSchema1, Digest: d.String(), Size: size,
			Platform: &skopeoPlatform{Architecture: arch, OS: "linux"},
		})
	}
	wantIdxRaw, err := json.Marshal(idxManifest)
	if err != nil {
		t.Fatal(err)
	}
	idxDigest, idxSize, _ := v1.SHA256(bytes.NewReader(wantIdxRaw))
	if err := lp.WriteBlob(idxDigest, io.NopCloser(bytes.NewReader(wantIdxRaw))); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendDescriptor(v1.Descriptor{MediaType: types.OCIImageIndex, Digest: idxDigest, Size: idxSize,
		Annotations: map[string]string{ociRefNameAnnotation: "multi"}}); err != nil {
		t.Fatal(err)
	}

	repo := "docker://" + reg.Host + "/skopeo/app"
	sk.run(t, ctx, "copy", "--dest-tls-verify=false", "oci:"+src+":v1", repo+":v1")
	sk.run(t, ctx, "copy", "--all", "--dest-tls-verify=false", "oci:"+src+":multi", repo+":multi")

	// inspect --raw returns the manifests byte for byte.
	wantRaw, _ := img.RawManifest()
	if got := sk.run(t, ctx, "inspect", "--raw", "--tls-verify=false", repo+":v1"); !bytes.Equal(got, wantRaw) {
		t.Fatalf("inspect --raw v1:\n%s\nwant:\n%s", got, wantRaw)
	}
	if got := sk.run(t, ctx, "inspect", "--raw", "--tls-verify=false", repo+":multi"); !bytes.Equal(got, wantIdxRaw) {
		t.Fatalf("inspect --raw multi:\n%s\nwant:\n%s", got, wantIdxRaw)
	}
	// inspect (parsed): digest, layers, and the index resolved to a platform's child.
	var info struct {
		Digest       string
		Layers       []string
		Architecture string
	}
	if err := json.Unmarshal(sk.run(t, ctx, "inspect", "--tls-verify=false", repo+":v1"), &info); err != nil {
		t.Fatal(err)
	}
	wd, _ := img.Digest()
	if info.Digest != wd.String() || !slices.Equal(info.Layers, layerDigests(t, img)) {
		t.Fatalf("inspect v1: digest %s layers %v, want %s %v", info.Digest, info.Layers, wd, layerDigests(t, img))
	}
	arm := idxManifest.Manifests[1]
	armImg := children[v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(arm.Digest, "sha256:")}]
	info.Layers = nil
	if err := json.Unmarshal(sk.run(t, ctx, "inspect", "--tls-verify=false", "--override-os=linux", "--override-arch=arm64", repo+":multi"), &info); err != nil {
		t.Fatal(err)
	}
	if info.Architecture != "arm64" || !slices.Equal(info.Layers, layerDigests(t, armImg)) {
		t.Fatalf("inspect multi for arm64: arch %q layers %v, want the layers of %s %v", info.Architecture, info.Layers, arm.Digest, layerDigests(t, armImg))
	}
	var tags struct{ Tags []string }
	if err := json.Unmarshal(sk.run(t, ctx, "list-tags", "--tls-verify=false", repo), &tags); err != nil {
		t.Fatal(err)
	}
	if slices.Sort(tags.Tags); !slices.Equal(tags.Tags, []string{"multi", "v1"}) {
		t.Fatalf("list-tags: %v, want [multi v1]", tags.Tags)
	}

	// Back out to a fresh layout: same digests, same blobs.
	out := filepath.Join(t.TempDir(), "out")
	sk.run(t, ctx, "copy", "--src-tls-verify=false", repo+":v1", "oci:"+out+":v1")
	sk.run(t, ctx, "copy", "--all", "--src-tls-verify=false", repo+":multi", "oci:"+out+":multi")
	outPath, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	outIdx, err := outPath.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	gotImg, err := outIdx.Image(layoutDigest(t, outIdx, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	assertSameImage(t, "oci:out:v1", gotImg, img)
	gotIdx, err := outIdx.ImageIndex(layoutDigest(t, outIdx, "multi"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := gotIdx.RawManifest(); !bytes.Equal(got, wantIdxRaw) {
		t.Fatalf("oci:out:multi index:\n%s\nwant:\n%s", got, wantIdxRaw)
	}
	for d, want := range children {
		got, err := gotIdx.Image(d)
		if err != nil {
			t.Fatalf("oci:out:multi child %s: %v", d, err)
		}
		assertSameImage(t, "oci:out:multi@"+d.String(), got, want)
	}
}

// skopeoIndex is an OCI index in the form containers/image serializes it.
type skopeoIndex struct {
	SchemaVersion int                `json:"schemaVersion"`
	MediaType     types.MediaType    `json:"mediaType"`
	Manifests     []skopeoDescriptor `json:"manifests"`
}

type skopeoDescriptor struct {
	MediaType types.MediaType `json:"mediaType"`
	Digest    string          `json:"digest"`
	Size      int64           `json:"size"`
	Platform  *skopeoPlatform `json:"platform,omitempty"`
}

type skopeoPlatform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// layoutDigest returns the digest the layout's index.json tags with ref name.
func layoutDigest(t *testing.T, ii v1.ImageIndex, name string) v1.Hash {
	t.Helper()
	m, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Annotations[ociRefNameAnnotation] == name {
			return d.Digest
		}
	}
	t.Fatalf("no %q in OCI layout index %+v", name, m.Manifests)
	return v1.Hash{}
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

// assertSameImage requires identical manifest bytes, config bytes and compressed layer
// bytes (each layer's content is also checked against its digest).
func assertSameImage(t *testing.T, what string, got, want v1.Image) {
	t.Helper()
	gm, err := got.RawManifest()
	if err != nil {
		t.Fatalf("%s: manifest: %v", what, err)
	}
	if wm, _ := want.RawManifest(); !bytes.Equal(gm, wm) {
		t.Fatalf("%s: manifest differs:\n%s\nwant:\n%s", what, gm, wm)
	}
	gc, err := got.RawConfigFile()
	if err != nil {
		t.Fatalf("%s: config: %v", what, err)
	}
	if wc, _ := want.RawConfigFile(); !bytes.Equal(gc, wc) {
		t.Fatalf("%s: config differs", what)
	}
	wl, _ := want.Layers()
	gl, err := got.Layers()
	if err != nil || len(gl) != len(wl) {
		t.Fatalf("%s: %d layers, want %d (%v)", what, len(gl), len(wl), err)
	}
	for i := range wl {
		wd, _ := wl[i].Digest()
		wr, _ := wl[i].Compressed()
		wb, _ := io.ReadAll(wr)
		gr, err := gl[i].Compressed()
		if err != nil {
			t.Fatalf("%s: layer %s: %v", what, wd, err)
		}
		gb, err := io.ReadAll(gr)
		gr.Close()
		if err != nil || !bytes.Equal(gb, wb) {
			t.Fatalf("%s: layer %s differs: %d bytes, want %d (%v)", what, wd, len(gb), len(wb), err)
		}
		if h, _, _ := v1.SHA256(bytes.NewReader(gb)); h != wd {
			t.Fatalf("%s: layer bytes hash to %s, want %s", what, h, wd)
		}
	}
}

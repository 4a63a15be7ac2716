package e2e

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/registryd/registryd/internal/testenv"
)

func ref(t *testing.T, host, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// assertImageRoundTrip pulls img back by tag and compares digests and every layer's bytes.
func assertImageRoundTrip(t *testing.T, r name.Reference, want v1.Image) {
	t.Helper()
	got, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pull %s: %v", r, err)
	}
	wd, _ := want.Digest()
	gd, err := got.Digest()
	if err != nil || gd != wd {
		t.Fatalf("pull %s: digest %s, want %s (%v)", r, gd, wd, err)
	}
	wl, _ := want.Layers()
	gl, err := got.Layers()
	if err != nil || len(gl) != len(wl) {
		t.Fatalf("layers: %d, want %d (%v)", len(gl), len(wl), err)
	}
	for i := range wl {
		wr, _ := wl[i].Compressed()
		wb, _ := io.ReadAll(wr)
		gr, err := gl[i].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		gb, err := io.ReadAll(gr)
		if err != nil || !bytes.Equal(gb, wb) {
			t.Fatalf("layer %d differs (%d vs %d bytes, %v)", i, len(gb), len(wb), err)
		}
	}
}

func TestPushPullGGCR(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			reg := testenv.StartRegistryd(t, registryConfig(b.storage(t), ""))
			testPushPull(t, reg.Host)
		})
	}
}

func testPushPull(t *testing.T, host string) {
	single, err := random.Image(3<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	multi, err := random.Image(256<<10, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref string
		img v1.Image
	}{{"single/layer:v1", single}, {"org/team/multi:latest", multi}} {
		r := ref(t, host, tc.ref)
		if err := remote.Write(r, tc.img); err != nil {
			t.Fatalf("push %s: %v", tc.ref, err)
		}
		assertImageRoundTrip(t, r, tc.img)
	}

	// A multi-platform index, pulled back by tag and each child by digest.
	idx, err := random.Index(64<<10, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	ir := ref(t, host, "multi/index:v2")
	if err := remote.WriteIndex(ir, idx); err != nil {
		t.Fatalf("push index: %v", err)
	}
	gotIdx, err := remote.Index(ir)
	if err != nil {
		t.Fatalf("pull index: %v", err)
	}
	wd, _ := idx.Digest()
	if gd, _ := gotIdx.Digest(); gd != wd {
		t.Fatalf("index digest %s, want %s", gd, wd)
	}
	im, _ := idx.IndexManifest()
	for _, d := range im.Manifests {
		child, _ := idx.Image(d.Digest)
		assertImageRoundTrip(t, ref(t, host, "multi/index@"+d.Digest.String()), child)
	}

	// An artifact with an empty config and a subject, found through the referrers API.
	subjDesc, err := remote.Head(ref(t, host, "single/layer:v1"))
	if err != nil {
		t.Fatal(err)
	}
	art := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	art = mutate.ConfigMediaType(art, "application/vnd.oci.empty.v1+json")
	art, err = mutate.Append(art, mutate.Addendum{Layer: static.NewLayer([]byte(`{"sbom":true}`), "application/spdx+json")})
	if err != nil {
		t.Fatal(err)
	}
	art = mutate.Subject(art, *subjDesc).(v1.Image)
	artDigest, _ := art.Digest()
	ar := ref(t, host, "single/layer@"+artDigest.String())
	if err := remote.Write(ar, art); err != nil {
		t.Fatalf("push artifact: %v", err)
	}
	refs, err := remote.Referrers(ref(t, host, "single/layer@"+subjDesc.Digest.String()).Context().Digest(subjDesc.Digest.String()))
	if err != nil {
		t.Fatalf("referrers: %v", err)
	}
	rm, _ := refs.IndexManifest()
	if len(rm.Manifests) != 1 || rm.Manifests[0].Digest != artDigest {
		t.Fatalf("referrers of %s: %+v, want %s", subjDesc.Digest, rm.Manifests, artDigest)
	}
	assertImageRoundTrip(t, ar, art)
}

// TestRedirect: with storage.redirect.enable, a blob GET on a signing backend answers 307
// to a pre-signed backend URL, and a client following it gets the blob.
func TestRedirect(t *testing.T) {
	for _, b := range backends() {
		if !b.signs {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			reg := testenv.StartRegistryd(t, registryConfig(b.storage(t)+"  redirect:\n    enable: true\n", ""))
			img, err := random.Image(1<<20, 2)
			if err != nil {
				t.Fatal(err)
			}
			r := ref(t, reg.Host, "redirect/img:v1")
			if err := remote.Write(r, img); err != nil {
				t.Fatalf("push: %v", err)
			}
			assertImageRoundTrip(t, r, img)
			layers, _ := img.Layers()
			d, _ := layers[0].Digest()
			noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := noFollow.Get(reg.URL + "/v2/redirect/img/blobs/" + d.String())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") == "" {
				t.Fatalf("GET blob: %d, Location %q; want 307 to a signed URL", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/registryd/registryd/internal/testenv"
)

// compatEntry is one tag a server pushes: an image or an index.
type compatEntry struct {
	repo, tag string
	img       v1.Image
	idx       v1.ImageIndex
}

// compatObjects are the images and index pushed by both servers under their own prefix,
// so that the two repository trees they write can be compared file by file.
type compatObjects struct {
	docker, oci v1.Image
	index       v1.ImageIndex
}

func newCompatObjects(t *testing.T) compatObjects {
	t.Helper()
	docker, err := random.Image(512<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(64<<10, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	return compatObjects{docker: docker, oci: randomOCIImage(t, 1<<20, 100<<10, 7), index: idx}
}

// shared lists the tags of the shared objects under prefix.
func (o compatObjects) shared(prefix string) []compatEntry {
	return []compatEntry{
		{repo: prefix + "/app", tag: "v1", img: o.docker},
		{repo: prefix + "/app", tag: "latest", img: o.docker},
		{repo: prefix + "/app", tag: "oci", img: o.oci},
		{repo: prefix + "/nested/deep/multi", tag: "idx", idx: o.index},
	}
}

// uniqueEntries are objects only one server writes: their blob data files come from it.
func uniqueEntries(t *testing.T, prefix string) []compatEntry {
	t.Helper()
	img, err := random.Image(3<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(32<<10, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	return []compatEntry{
		{repo: prefix + "/img", tag: "v1", img: img},
		{repo: prefix + "/img", tag: "oci", img: randomOCIImage(t, 700<<10)},
		{repo: prefix + "/idx", tag: "v1", idx: idx},
	}
}

// TestDistributionLayoutCompat hands one filesystem directory back and forth between CNCF
// Distribution v3 and registryd: (a) Distribution writes images and an index, registryd
// serves them (digests, manifest/config/layer bytes, tags lists, catalog); (b) registryd
// writes the same objects under another prefix plus its own, Distribution serves
// everything. The repository trees both servers wrote for identical pushes must hold the
// same files with the same link contents, and every blob data file must hash to its path.
func TestDistributionLayoutCompat(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	root := t.TempDir()
	objs := newCompatObjects(t)

	// (a) Distribution writes.
	dist := testenv.StartDistribution(t, root)
	distOnly := uniqueEntries(t, "dist-only")
	distSet := append(objs.shared("dist"), distOnly...)
	pushCompat(t, ctx, dist.Host, distSet)
	verifyCompat(t, ctx, "distribution (own writes)", dist.Host, distSet)
	dist.Stop()

	// registryd serves Distribution's directory, then writes to it.
	reg := testenv.StartRegistryd(t, registryConfig("  filesystem:\n    rootdirectory: "+root+"\n", ""))
	verifyCompat(t, ctx, "registryd reading Distribution's layout", reg.Host, distSet)
	regSet := append(objs.shared("rd"), uniqueEntries(t, "rd-only")...)
	pushCompat(t, ctx, reg.Host, regSet)
	// A cross-repository mount of a blob Distribution wrote: ggcr mounts layers of a
	// remote image from the same registry instead of uploading them.
	src, err := remote.Image(compatRef(t, reg.Host, distOnly[0].repo, distOnly[0].tag), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(compatRef(t, reg.Host, "rd-only/mounted", "v1"), src, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push with cross-repository mount: %v", err)
	}
	mounted := compatEntry{repo: "rd-only/mounted", tag: "v1", img: distOnly[0].img}
	regSet = append(regSet, mounted)
	all := append(append([]compatEntry{}, distSet...), regSet...)
	verifyCompat(t, ctx, "registryd (own and Distribution's writes)", reg.Host, all)
	reg.Stop()

	// (b) Distribution serves what registryd wrote, and its own earlier writes.
	dist = testenv.StartDistribution(t, root)
	verifyCompat(t, ctx, "distribution reading registryd's layout", dist.Host, all)

	compareRepoTrees(t, root, "dist", "rd")
	checkBlobData(t, root)
}

func compatRef(t *testing.T, host, repo, tagOrDigest string) name.Reference {
	t.Helper()
	sep := ":"
	if strings.HasPrefix(tagOrDigest, "sha256:") {
		sep = "@"
	}
	r, err := name.ParseReference(host+"/"+repo+sep+tagOrDigest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pushCompat(t *testing.T, ctx context.Context, host string, entries []compatEntry) {
	t.Helper()
	for _, e := range entries {
		r := compatRef(t, host, e.repo, e.tag)
		var err error
		if e.img != nil {
			err = remote.Write(r, e.img, remote.WithContext(ctx))
		} else {
			err = remote.WriteIndex(r, e.idx, remote.WithContext(ctx))
		}
		if err != nil {
			t.Fatalf("push %s: %v", r, err)
		}
	}
}

// verifyCompat pulls every entry back from host (by tag, index children by digest) and
// compares bytes, then the tags list of every repository; entries must cover every
// repository in the store, as the catalog has to list exactly theirs.
func verifyCompat(t *testing.T, ctx context.Context, what, host string, entries []compatEntry) {
	t.Helper()
	wantTags := map[string][]string{}
	for _, e := range entries {
		wantTags[e.repo] = append(wantTags[e.repo], e.tag)
		r := compatRef(t, host, e.repo, e.tag)
		if e.img != nil {
			got, err := remote.Image(r, remote.WithContext(ctx))
			if err != nil {
				t.Fatalf("%s: pull %s: %v", what, r, err)
			}
			assertSameImage(t, what+": "+r.String(), got, e.img)
			continue
		}
		got, err := remote.Index(r, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("%s: pull index %s: %v", what, r, err)
		}
		gb, err := got.RawManifest()
		if err != nil {
			t.Fatalf("%s: index %s: %v", what, r, err)
		}
		if wb, _ := e.idx.RawManifest(); !bytes.Equal(gb, wb) {
			t.Fatalf("%s: index %s differs:\n%s\nwant:\n%s", what, r, gb, wb)
		}
		im, _ := e.idx.IndexManifest()
		for _, d := range im.Manifests {
			child, _ := e.idx.Image(d.Digest)
			cr := compatRef(t, host, e.repo, d.Digest.String())
			gotChild, err := remote.Image(cr, remote.WithContext(ctx))
			if err != nil {
				t.Fatalf("%s: pull %s: %v", what, cr, err)
			}
			assertSameImage(t, what+": "+cr.String(), gotChild, child)
		}
	}
	var repos []string
	for repo, tags := range wantTags {
		repos = append(repos, repo)
		slices.Sort(tags)
		tags = slices.Compact(tags)
		got, err := remote.List(compatRef(t, host, repo, "x").Context(), remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("%s: tags list %s: %v", what, repo, err)
		}
		slices.Sort(got)
		if !slices.Equal(got, tags) {
			t.Fatalf("%s: tags of %s: %v, want %v", what, repo, got, tags)
		}
	}
	slices.Sort(repos)
	reg, err := name.NewRegistry(host, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := remote.Catalog(ctx, reg)
	if err != nil {
		t.Fatalf("%s: catalog: %v", what, err)
	}
	slices.Sort(catalog)
	if !slices.Equal(catalog, repos) {
		t.Fatalf("%s: catalog %v, want %v", what, catalog, repos)
	}
}

// repoTree maps every file below repositories/<prefix> (path relative to it) to its
// content. _uploads (in-flight state) and _referrers (registryd's own) are left out.
func repoTree(t *testing.T, root, prefix string) map[string]string {
	t.Helper()
	base := filepath.Join(root, "docker", "registry", "v2", "repositories", prefix)
	tree := map[string]string{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "_uploads" || d.Name() == "_referrers" {
				return fs.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(base, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		tree[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", base, err)
	}
	return tree
}

// compareRepoTrees requires the repository trees two servers wrote for the same pushes to
// hold the same files with the same contents.
func compareRepoTrees(t *testing.T, root, distPrefix, regPrefix string) {
	t.Helper()
	want := repoTree(t, root, distPrefix)
	got := repoTree(t, root, regPrefix)
	if len(want) == 0 {
		t.Fatalf("Distribution wrote nothing under repositories/%s", distPrefix)
	}
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, "missing in registryd's tree: "+p+" (Distribution: "+w+")")
		case g != w:
			diffs = append(diffs, "differs: "+p+": registryd "+g+", Distribution "+w)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, "only in registryd's tree: "+p+" ("+g+")")
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 0 {
		t.Fatalf("repositories/%s (registryd) vs repositories/%s (Distribution), same pushes:\n%s",
			regPrefix, distPrefix, strings.Join(diffs, "\n"))
	}
	t.Logf("repository trees match: %d files", len(want))
}

// checkBlobData requires every blobs/sha256/<xx>/<hex>/data file to hash to <hex>.
func checkBlobData(t *testing.T, root string) {
	t.Helper()
	base := filepath.Join(root, "docker", "registry", "v2", "blobs", "sha256")
	n := 0
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) != 3 || parts[2] != "data" || !strings.HasPrefix(parts[1], parts[0]) || len(parts[0]) != 2 {
			t.Errorf("unexpected file in blobs: %s", rel)
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		if sum := hex.EncodeToString(h.Sum(nil)); sum != parts[1] {
			t.Errorf("blob %s holds content with digest %s", rel, sum)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no blob data files")
	}
	t.Logf("%d blob data files match their digests", n)
}

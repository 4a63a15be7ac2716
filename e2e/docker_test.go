package e2e

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/registryd/registryd/internal/testenv"
)

// dockerImage is one image the Docker engine test builds, pushes and pulls back.
type dockerImage struct {
	ref        string // 127.0.0.1:PORT/e2e/...:tag
	files      []int  // sizes of the random files in its single layer
	id         string // image ID after import (the config digest)
	pushDigest string // manifest digest reported by docker push
	repoDigest string // RepoDigests entry after the push
}

var (
	dockerPushDigestRE = regexp.MustCompile(`digest: (sha256:[0-9a-f]{64}) size: [0-9]+`)
	dockerPullDigestRE = regexp.MustCompile(`Digest: (sha256:[0-9a-f]{64})`)
)

// TestDockerEngine pushes and pulls with the real Docker engine: images made with
// `docker import` from random tarballs (one of ~20 MiB in several files) are pushed
// concurrently (one of them also under a second repository, so the same blobs are
// uploaded twice at once), removed locally, pulled back concurrently, and must come back
// with the same image IDs and the same manifest digests, which also match what
// registryd serves.
func TestDockerEngine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	reg := testenv.StartRegistryd(t, registryConfig(filesystemBackend(t), ""))
	dk := testenv.StartDockerd(t)

	tarDir := t.TempDir()
	imgs := []*dockerImage{
		{ref: reg.Host + "/e2e/img0:v1", files: []int{4 << 10}},
		{ref: reg.Host + "/e2e/img1:v2", files: []int{300 << 10, 1}},
		{ref: reg.Host + "/e2e/nested/img2:latest", files: []int{1 << 20, 512 << 10, 600 << 10}},
		{ref: reg.Host + "/e2e/img3:big", files: []int{6 << 20, 5 << 20, 4 << 20, 3 << 20, 2<<20 + 12345}},
	}
	for i, img := range imgs {
		tarPath := filepath.Join(tarDir, fmt.Sprintf("img%d.tar", i))
		writeRandomTar(t, tarPath, img.files)
		out, err := dk.Exec(ctx, "import", tarPath, img.ref)
		if err != nil {
			t.Fatal(err)
		}
		img.id = strings.TrimSpace(out)
		if !strings.HasPrefix(img.id, "sha256:") {
			t.Fatalf("docker import %s printed %q, want an image ID", img.ref, out)
		}
	}
	// The same image under a second repository, pushed at the same time as the first.
	shared := &dockerImage{ref: reg.Host + "/e2e/shared:copy", id: imgs[1].id}
	if _, err := dk.Exec(ctx, "tag", imgs[1].ref, shared.ref); err != nil {
		t.Fatal(err)
	}
	pushed := append(append([]*dockerImage{}, imgs...), shared)

	start := time.Now()
	forEachConcurrently(t, pushed, func(img *dockerImage) error {
		out, err := dk.Exec(ctx, "push", img.ref)
		if err != nil {
			return err
		}
		m := dockerPushDigestRE.FindStringSubmatch(out)
		if m == nil {
			return fmt.Errorf("docker push %s: no digest in output:\n%s", img.ref, out)
		}
		img.pushDigest = m[1]
		return nil
	})
	t.Logf("pushed %d images concurrently in %v", len(pushed), time.Since(start).Round(time.Millisecond))
	if shared.pushDigest != imgs[1].pushDigest {
		t.Errorf("same image pushed to two repositories: digests %s and %s", imgs[1].pushDigest, shared.pushDigest)
	}

	for _, img := range pushed {
		// What registryd serves: the manifest digest docker reported, and a config whose
		// digest is docker's image ID.
		r, err := name.ParseReference(img.ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(r, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("HEAD %s on registryd: %v", img.ref, err)
		}
		if desc.Digest.String() != img.pushDigest {
			t.Errorf("%s: registryd serves manifest %s, docker push reported %s", img.ref, desc.Digest, img.pushDigest)
		}
		ri, err := remote.Image(r, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("GET %s on registryd: %v", img.ref, err)
		}
		if cn, err := ri.ConfigName(); err != nil || cn.String() != img.id {
			t.Errorf("%s: registryd config digest %s (%v), want image ID %s", img.ref, cn, err, img.id)
		}
		img.repoDigest = dockerRepoDigest(t, ctx, dk, img.ref)
		if want := dockerRepoOf(img.ref) + "@" + img.pushDigest; img.repoDigest != want {
			t.Errorf("%s: RepoDigests entry %q after push, want %q", img.ref, img.repoDigest, want)
		}
	}

	// Remove every local copy; nothing may be left for the pulls to reuse.
	rmi := []string{"rmi"}
	for _, img := range pushed {
		rmi = append(rmi, img.ref)
	}
	if _, err := dk.Exec(ctx, rmi...); err != nil {
		t.Fatal(err)
	}
	if out, err := dk.Exec(ctx, "images", "-aq"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("images left after rmi: %q (%v)", out, err)
	}

	start = time.Now()
	forEachConcurrently(t, imgs, func(img *dockerImage) error {
		out, err := dk.Exec(ctx, "pull", img.ref)
		if err != nil {
			return err
		}
		m := dockerPullDigestRE.FindStringSubmatch(out)
		if m == nil {
			return fmt.Errorf("docker pull %s: no digest in output:\n%s", img.ref, out)
		}
		if m[1] != img.pushDigest {
			return fmt.Errorf("docker pull %s: digest %s, pushed %s", img.ref, m[1], img.pushDigest)
		}
		return nil
	})
	t.Logf("pulled %d images concurrently in %v", len(imgs), time.Since(start).Round(time.Millisecond))

	// The second repository is pulled by digest.
	if _, err := dk.Exec(ctx, "pull", dockerRepoOf(shared.ref)+"@"+shared.pushDigest); err != nil {
		t.Fatal(err)
	}
	shared.ref = dockerRepoOf(shared.ref) + "@" + shared.pushDigest

	for _, img := range pushed {
		out, err := dk.Exec(ctx, "image", "inspect", "--format", "{{.Id}}", img.ref)
		if err != nil {
			t.Fatal(err)
		}
		if id := strings.TrimSpace(out); id != img.id {
			t.Errorf("%s: image ID %s after pull, %s before push", img.ref, id, img.id)
		}
		if got := dockerRepoDigest(t, ctx, dk, img.ref); got != img.repoDigest {
			t.Errorf("%s: RepoDigests entry %q after pull, %q after push", img.ref, got, img.repoDigest)
		}
	}
}

// forEachConcurrently runs f on every image at once and fails the test with every error.
func forEachConcurrently(t *testing.T, imgs []*dockerImage, f func(*dockerImage) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(imgs))
	for i, img := range imgs {
		wg.Go(func() { errs[i] = f(img) })
	}
	wg.Wait()
	failed := false
	for _, err := range errs {
		if err != nil {
			t.Error(err)
			failed = true
		}
	}
	if failed {
		t.FailNow()
	}
}

// dockerRepoDigest returns the image's RepoDigests entry for the repository of ref.
func dockerRepoDigest(t *testing.T, ctx context.Context, dk *testenv.Dockerd, ref string) string {
	t.Helper()
	out, err := dk.Exec(ctx, "image", "inspect", "--format", "{{json .RepoDigests}}", ref)
	if err != nil {
		t.Fatal(err)
	}
	var digests []string
	if err := json.Unmarshal([]byte(out), &digests); err != nil {
		t.Fatalf("RepoDigests of %s: %q: %v", ref, out, err)
	}
	repo := dockerRepoOf(ref)
	for _, d := range digests {
		if strings.HasPrefix(d, repo+"@") {
			return d
		}
	}
	t.Fatalf("%s: no RepoDigests entry for %s in %v", ref, repo, digests)
	return ""
}

// dockerRepoOf strips the tag or digest from host:port/repo[:tag|@digest].
func dockerRepoOf(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// writeRandomTar writes a tarball with a directory and one file of random bytes per size
// (random content does not compress, so the pushed layer is about the same size).
func writeRandomTar(t *testing.T, path string, sizes []int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8(randomSeed())
	tw := tar.NewWriter(f)
	now := time.Now().Truncate(time.Second)
	if err := tw.WriteHeader(&tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now}); err != nil {
		t.Fatal(err)
	}
	for i, size := range sizes {
		hdr := &tar.Header{Name: fmt.Sprintf("data/file%d.bin", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size), ModTime: now}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(tw, rng, int64(size)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// randomSeed returns a fresh seed, so every run pushes content no registry has seen.
func randomSeed() [32]byte {
	var seed [32]byte
	for i := 0; i < len(seed); i += 8 {
		binary.LittleEndian.PutUint64(seed[i:], rand.Uint64())
	}
	return seed
}

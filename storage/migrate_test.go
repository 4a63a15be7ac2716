package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/fault"
	"github.com/registryd/registryd/driver/inmemory"
)

// migrateFixture is a source registry with two repositories sharing a large layer (one
// streamed through a Writer), an image tagged twice, a multi-arch index, a referrer and
// tag history.
type migrateFixture struct {
	src      *inmemory.Driver
	shared   digest.Digest // the large layer both repositories link
	small    digest.Digest // a small layer of a/app only
	image    digest.Digest // a/app:v1 and :v2
	old      digest.Digest // a/app:v1 before it moved (tag history)
	index    digest.Digest // b/lib:multi
	referrer digest.Digest // a/app, subject image
	blobs    int           // distinct blobs, manifests included
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func putTestBlob(t *testing.T, r *Registry, repo string, b []byte) ocispec.Descriptor {
	t.Helper()
	d := digest.FromBytes(b)
	if _, err := r.PutBlob(context.Background(), repo, bytes.NewReader(b), d); err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: int64(len(b))}
}

func putTestManifest(t *testing.T, r *Registry, repo, ref string, m any) digest.Digest {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.PutManifest(context.Background(), repo, ref, b, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return out.Digest
}

type testImage struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	Config        ocispec.Descriptor   `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Subject       *ocispec.Descriptor  `json:"subject,omitempty"`
}

type testIndex struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
}

func newMigrateFixture(t *testing.T) *migrateFixture {
	t.Helper()
	f := &migrateFixture{src: inmemory.New()}
	r := newTestRegistry(t, f.src)
	large := randomBytes(t, MigrateSmallBlob+(1<<20)+123)
	img := func(repo, ref string, layers ...[]byte) digest.Digest {
		cfg := putTestBlob(t, r, repo, []byte(`{"architecture":"`+ref+`"}`))
		m := testImage{SchemaVersion: 2, MediaType: MediaTypeOCIManifest, Config: cfg}
		for _, l := range layers {
			m.Layers = append(m.Layers, putTestBlob(t, r, repo, l))
		}
		return putTestManifest(t, r, repo, ref, m)
	}
	smallLayer := randomBytes(t, 3000)
	f.shared, f.small = digest.FromBytes(large), digest.FromBytes(smallLayer)
	f.old = img("a/app", "v1", smallLayer)
	f.image = img("a/app", "v1", large, smallLayer)
	putLinkTag(t, r, "a/app", "v2", f.image)
	f.referrer = putTestManifest(t, r, "a/app", "sig", testImage{SchemaVersion: 2, MediaType: MediaTypeOCIManifest,
		Config:  putTestBlob(t, r, "a/app", []byte(`{"signature":true}`)),
		Subject: &ocispec.Descriptor{MediaType: MediaTypeOCIManifest, Digest: f.image, Size: 1}})
	amd := img("b/lib", "amd64", large)
	arm := img("b/lib", "arm64", randomBytes(t, 5000))
	f.index = putTestManifest(t, r, "b/lib", "multi", testIndex{SchemaVersion: 2, MediaType: MediaTypeOCIIndex,
		Manifests: []ocispec.Descriptor{{MediaType: MediaTypeOCIManifest, Digest: amd, Size: 1}, {MediaType: MediaTypeOCIManifest, Digest: arm, Size: 1}}})
	// configs v1 (twice, same bytes), sig, amd64, arm64 → 4 distinct configs; layers: large,
	// small, arm's; manifests: old, image, referrer, amd, arm, index.
	f.blobs = 4 + 3 + 6
	return f
}

// putLinkTag tags d as tag in repo (a manifest PUT by tag of the same bytes).
func putLinkTag(t *testing.T, r *Registry, repo, tag string, d digest.Digest) {
	t.Helper()
	m, err := r.GetManifest(context.Background(), repo, d.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutManifest(context.Background(), repo, tag, m.Body, m.MediaType, nil); err != nil {
		t.Fatal(err)
	}
}

// tree returns every object under the layout root with its bytes.
func tree(t *testing.T, d driver.Driver) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(dir string)
	walk = func(dir string) {
		l, err := listAll(context.Background(), d, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range l {
			if e.Path == gcDir() {
				continue // garbage collection's bookkeeping (push markers) is not migrated
			}
			if e.IsDir {
				walk(e.Path)
				continue
			}
			b, err := readSmall(context.Background(), d, e.Path, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			out[e.Path] = string(b)
		}
	}
	walk(rootPrefix)
	return out
}

// recorder is a driver wrapper that records the committed writes (Put, Writer.Commit)
// and the aborted writers, in order.
type recorder struct {
	driver.Driver
	mu      sync.Mutex
	writes  []string
	aborted []string
	// hold, when set, is called before each write with its path; it may block.
	hold func(ctx context.Context, p string) error
}

func (r *recorder) note(list *[]string, p string) {
	r.mu.Lock()
	*list = append(*list, p)
	r.mu.Unlock()
}

func (r *recorder) Put(ctx context.Context, p string, body io.Reader, size int64) error {
	if r.hold != nil {
		if err := r.hold(ctx, p); err != nil {
			return err
		}
	}
	if err := r.Driver.Put(ctx, p, body, size); err != nil {
		return err
	}
	r.note(&r.writes, p)
	return nil
}

func (r *recorder) Writer(ctx context.Context, p string, resume []byte) (driver.Writer, error) {
	w, err := r.Driver.Writer(ctx, p, resume)
	if err != nil {
		return nil, err
	}
	return &recWriter{Writer: w, r: r, p: p}, nil
}

type recWriter struct {
	driver.Writer
	r *recorder
	p string
}

func (w *recWriter) Commit(ctx context.Context) error {
	if w.r.hold != nil {
		if err := w.r.hold(ctx, w.p); err != nil {
			return err
		}
	}
	if err := w.Writer.Commit(ctx); err != nil {
		return err
	}
	w.r.note(&w.r.writes, w.p)
	return nil
}

func (w *recWriter) Abort(ctx context.Context) error {
	w.r.note(&w.r.aborted, w.p)
	return w.Writer.Abort(ctx)
}

func migrate(t *testing.T, src, dst driver.Driver, opts MigrateOptions) MigrateReport {
	t.Helper()
	m, err := NewMigration(src, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := m.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// kind classifies a layout path for the ordering check.
func kind(p string) int {
	switch {
	case strings.Contains(p, "/blobs/"):
		return 0
	case strings.Contains(p, "/_layers/"):
		return 1
	case strings.Contains(p, "/_manifests/revisions/"):
		return 2
	case strings.Contains(p, "/_referrers/"):
		return 3
	case strings.Contains(p, "/_manifests/tags/"):
		return 4
	}
	return -1
}

// TestMigrate: a full copy holds every object of the source with equal bytes, is written
// in dependency order (blobs, layer links, manifests, referrers, tags), streams the large
// blob through a Writer once although two repositories link it, and serves; a second run
// writes nothing; a moved tag is updated.
func TestMigrate(t *testing.T) {
	f := newMigrateFixture(t)
	inner := inmemory.New()
	rec := &recorder{Driver: inner}
	dst := fault.New(rec)
	rep := migrate(t, f.src, dst, MigrateOptions{Concurrency: 4})

	want := tree(t, f.src)
	got := tree(t, inner)
	if len(got) != len(want) {
		t.Errorf("destination holds %d objects, source %d", len(got), len(want))
	}
	for p, b := range want {
		if got[p] != b {
			t.Errorf("%s: differs or missing at the destination", p)
		}
	}
	if rep.Failed != 0 || len(rep.Failures) != 0 {
		t.Fatalf("failures: %+v", rep.Failures)
	}
	if rep.Repositories != 2 || rep.Blobs != int64(f.blobs) || rep.BlobsCopied != int64(f.blobs) || rep.BlobsSkipped != 0 {
		t.Errorf("report %+v, want 2 repositories and %d blobs copied", rep.MigrateStats, f.blobs)
	}
	// a/app: old, image, referrer; b/lib: amd, arm, index. Tags: v1 v2 sig amd64 arm64 multi.
	if rep.Manifests != 6 || rep.Tags != 6 || rep.Referrers != 1 {
		t.Errorf("report %+v, want 6 manifests, 6 tags, 1 referrer", rep.MigrateStats)
	}
	if n := dst.Calls(fault.Writer); n != 1 {
		t.Errorf("%d Writer sessions, want 1 (the large blob, once for two repositories)", n)
	}
	// Order: every write of a kind comes after every write of the kinds before it.
	maxSeen := -1
	for _, p := range rec.writes {
		k := kind(p)
		if k < maxSeen {
			t.Errorf("write of %s (kind %d) after a write of kind %d", p, k, maxSeen)
		}
		maxSeen = max(maxSeen, k)
	}
	// A tag's current link comes after its index links.
	current := map[string]bool{}
	for _, p := range rec.writes {
		if dir, ok := strings.CutSuffix(p, "/current/link"); ok {
			current[dir] = true
		} else if dir, _, ok := strings.Cut(p, "/index/"); ok && current[dir] {
			t.Errorf("index link %s written after the tag's current link", p)
		}
	}

	reg := newTestRegistry(t, inner)
	for _, c := range []struct{ repo, tag string }{{"a/app", "v1"}, {"a/app", "v2"}, {"b/lib", "multi"}} {
		m, err := reg.GetManifest(context.Background(), c.repo, c.tag)
		if err != nil {
			t.Fatalf("%s:%s at the destination: %v", c.repo, c.tag, err)
		}
		if c.tag == "v1" && m.Digest != f.image {
			t.Errorf("a/app:v1 is %s, want %s", m.Digest, f.image)
		}
	}
	if b, err := readBlob(t, reg, "b/lib", f.shared); err != nil || digest.FromBytes(b) != f.shared {
		t.Errorf("shared blob in b/lib: %v", err)
	}
	refs, err := reg.Referrers(context.Background(), "a/app", f.image, "")
	if err != nil || len(refs) != 1 || refs[0].Digest != f.referrer {
		t.Errorf("referrers at the destination: %v %v", refs, err)
	}

	// Second run: nothing to write.
	dst.ResetCounts()
	rep = migrate(t, f.src, dst, MigrateOptions{})
	if n := dst.Calls(fault.Put) + dst.Calls(fault.Writer); n != 0 {
		t.Errorf("second run made %d Put/Writer calls, want 0", n)
	}
	if rep.BlobsCopied != 0 || rep.BlobsSkipped != int64(f.blobs) || rep.Manifests != 0 || rep.ManifestsSkipped != 6 ||
		rep.Tags != 0 || rep.TagsSkipped != 6 || rep.Links != 0 || rep.Referrers != 0 || rep.ReferrersSkipped != 1 {
		t.Errorf("second run report %+v", rep.MigrateStats)
	}

	// The source's a/app:v2 moves to the referrer manifest: only that tag (and its new
	// index link) is written.
	putLinkTag(t, newTestRegistry(t, f.src), "a/app", "v2", f.old)
	dst.ResetCounts()
	rep = migrate(t, f.src, dst, MigrateOptions{})
	if rep.Tags != 1 || rep.TagsSkipped != 5 || rep.Links != 1 || dst.Calls(fault.Put) != 2 {
		t.Errorf("after a tag moved: report %+v, %d Puts; want 1 tag and 1 link written", rep.MigrateStats, dst.Calls(fault.Put))
	}
	if d, err := reg.ResolveTag(context.Background(), "a/app", "v2"); err != nil || d != f.old {
		t.Errorf("moved tag at the destination: %s %v, want %s", d, err, f.old)
	}
}

// TestMigrateCorruptBlob: a source blob whose bytes do not match its digest is reported,
// never written (a streamed one is Aborted), and neither are the manifests that reference
// it nor the tags pointing at them; everything else is copied.
func TestMigrateCorruptBlob(t *testing.T) {
	for _, c := range []struct {
		name    string
		blob    func(f *migrateFixture) digest.Digest
		mutate  func(b []byte) []byte
		aborted bool
		// tags that must not be written, per repository (a/app:sig's subject is not a
		// dependency: referrers may be pushed before their subject)
		tags map[string][]string
	}{
		{"large blob flipped byte", func(f *migrateFixture) digest.Digest { return f.shared },
			func(b []byte) []byte { b[len(b)/2] ^= 1; return b }, true,
			map[string][]string{"a/app": {"v1", "v2"}, "b/lib": {"amd64", "multi"}}},
		{"small blob truncated", func(f *migrateFixture) digest.Digest { return f.small },
			func(b []byte) []byte { return b[:len(b)-1] }, false,
			map[string][]string{"a/app": {"v1", "v2"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newMigrateFixture(t)
			bad := c.blob(f)
			p := blobDataPath(bad)
			b, err := readSmall(context.Background(), f.src, p, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			b = c.mutate(b)
			if err := f.src.Put(context.Background(), p, bytes.NewReader(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
			inner := inmemory.New()
			rec := &recorder{Driver: inner}
			rep := migrate(t, f.src, rec, MigrateOptions{})
			if rep.BlobsFailed != 1 {
				t.Errorf("BlobsFailed = %d, want 1", rep.BlobsFailed)
			}
			found := false
			for _, fl := range rep.Failures {
				if fl.Object == "blob "+bad.String() && errors.Is(fl.Err, ErrMigrateDigestMismatch) {
					found = true
				}
			}
			if !found {
				t.Errorf("failures %+v do not report the corrupt blob", rep.Failures)
			}
			if _, err := inner.Stat(context.Background(), p); !errors.Is(err, driver.ErrNotFound) {
				t.Errorf("corrupt blob at the destination: %v", err)
			}
			if got := len(rec.aborted) == 1 && rec.aborted[0] == p; got != c.aborted {
				t.Errorf("aborted writers %v, want the blob's aborted: %v", rec.aborted, c.aborted)
			}
			reg := newTestRegistry(t, inner)
			for _, repo := range []string{"a/app", "b/lib"} {
				tags, _ := (&Registry{d: f.src}).allTags(context.Background(), repo)
				for _, tag := range tags {
					_, err := reg.GetManifest(context.Background(), repo, tag)
					wantFail := strings.Contains(strings.Join(c.tags[repo], ","), tag)
					if wantFail && err == nil {
						t.Errorf("%s:%s served although it references the corrupt blob", repo, tag)
					}
					if !wantFail && err != nil {
						t.Errorf("%s:%s: %v", repo, tag, err)
					}
				}
			}
			// Invariant: every current link at the destination resolves to a manifest
			// whose referenced blobs are all there.
			checkNoDangling(t, inner)
		})
	}
}

// checkNoDangling fails if a tag at d points at a manifest that is missing or whose
// blobs or child manifests are missing.
func checkNoDangling(t *testing.T, d driver.Driver) {
	t.Helper()
	reg := newTestRegistry(t, d)
	ctx := context.Background()
	repos, _, err := reg.Catalog(ctx, "", -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range repos {
		tags, err := reg.allTags(ctx, repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range tags {
			target, err := reg.readLink(ctx, tagCurrentPath(repo, tag))
			if errors.Is(err, driver.ErrNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			m, err := reg.GetManifest(ctx, repo, target.String())
			if err != nil {
				t.Errorf("%s:%s points at %s: %v", repo, tag, target, err)
				continue
			}
			var mj manifestJSON
			_ = json.Unmarshal(m.Body, &mj)
			for _, ref := range append(append(mj.Layers, mj.Manifests...), derefConfig(mj.Config)...) {
				if _, err := d.Stat(ctx, blobDataPath(ref.Digest)); err != nil {
					t.Errorf("%s:%s: %s missing: %v", repo, tag, ref.Digest, err)
				}
			}
		}
	}
}

func derefConfig(c *ocispec.Descriptor) []ocispec.Descriptor {
	if c == nil {
		return nil
	}
	return []ocispec.Descriptor{*c}
}

// TestMigrateDryRun: a dry run writes nothing and counts what a real run then writes.
func TestMigrateDryRun(t *testing.T) {
	f := newMigrateFixture(t)
	dst := fault.New(inmemory.New())
	dry := migrate(t, f.src, dst, MigrateOptions{DryRun: true})
	if n := dst.Calls(fault.Put) + dst.Calls(fault.Writer) + dst.Calls(fault.Delete) + dst.Calls(fault.Copy); n != 0 {
		t.Fatalf("dry run made %d writing calls", n)
	}
	if len(tree(t, dst.Inner())) != 0 {
		t.Fatal("dry run left objects")
	}
	real := migrate(t, f.src, dst, MigrateOptions{})
	real.BytesStreamed = 0 // bytes read, which a dry run does not
	if !dry.DryRun || dry.MigrateStats != real.MigrateStats {
		t.Errorf("dry run counted %+v, the real run %+v", dry.MigrateStats, real.MigrateStats)
	}
}

// TestMigrateCancelAndResume: a run cancelled while blobs are being written aborts its
// in-flight writers, leaves no tag (nor manifest) pointing at missing content and
// returns the context's error; the next run copies each blob not yet copied, once.
func TestMigrateCancelAndResume(t *testing.T) {
	f := newMigrateFixture(t)
	inner := inmemory.New()
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	rec := &recorder{Driver: inner}
	committed := 0
	rec.hold = func(hctx context.Context, p string) error {
		// Let three blob writes through, then cancel and hold the rest until the
		// context ends (as a slow backend would).
		rec.mu.Lock()
		committed++
		n := committed
		rec.mu.Unlock()
		if n <= 3 {
			return nil
		}
		once.Do(cancel)
		<-hctx.Done()
		return hctx.Err()
	}
	m, err := NewMigration(f.src, rec, MigrateOptions{Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := m.Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	// Up to three blob writes were let through (one may still have met the cancelled
	// context); the report counts exactly those that were stored.
	if rep.BlobsCopied != int64(len(rec.writes)) || rep.BlobsCopied == 0 || rep.BlobsCopied > 3 {
		t.Errorf("cancelled run reported %d blobs copied, stored %d", rep.BlobsCopied, len(rec.writes))
	}
	copied := rep.BlobsCopied
	for _, p := range rec.writes {
		if kind(p) != 0 {
			t.Errorf("cancelled run wrote %s", p)
		}
	}
	if rep.Failed != 0 {
		t.Errorf("cancellation reported as failures: %+v", rep.Failures)
	}
	checkNoDangling(t, inner)
	firstRun := append([]string(nil), rec.writes...)

	rec.hold = nil
	rec.writes = nil
	rep = migrate(t, f.src, rec, MigrateOptions{})
	if rep.BlobsSkipped != copied || rep.BlobsCopied != int64(f.blobs)-copied || rep.Failed != 0 {
		t.Errorf("resumed run: %+v", rep.MigrateStats)
	}
	seen := map[string]bool{}
	for _, p := range append(firstRun, rec.writes...) {
		if seen[p] {
			t.Errorf("%s written twice", p)
		}
		seen[p] = true
	}
	want, got := tree(t, f.src), tree(t, inner)
	for p, b := range want {
		if got[p] != b {
			t.Errorf("%s differs or is missing after the resumed run", p)
		}
	}
}

// TestMigrateFailingObject: an object the destination refuses for good is reported,
// what depends on it is not written, and the rest of the run goes on.
func TestMigrateFailingObject(t *testing.T) {
	f := newMigrateFixture(t)
	dst := fault.New(inmemory.New())
	dst.Add(fault.Rule{Methods: []string{fault.Put}, Contains: "b/lib/_layers/", Err: driver.ErrPermission})
	rep := migrate(t, f.src, dst, MigrateOptions{})
	if rep.Failed == 0 {
		t.Fatal("no failure reported")
	}
	for _, fl := range rep.Failures {
		if strings.Contains(fl.Object, "a/app") {
			t.Errorf("a/app affected: %s: %s", fl.Object, fl.Reason)
		}
	}
	reg := newTestRegistry(t, dst.Inner())
	if _, err := reg.GetManifest(context.Background(), "a/app", "v1"); err != nil {
		t.Errorf("a/app:v1: %v", err)
	}
	tags, _ := reg.allTags(context.Background(), "b/lib")
	if len(tags) != 0 {
		t.Errorf("b/lib tags written although its layer links failed: %v", tags)
	}
	checkNoDangling(t, dst.Inner())
}

// TestMigrateRepositories: the pattern selects repositories.
func TestMigrateRepositories(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"", "a/b", true},
		{"**", "a/b/c", true},
		{"a/*", "a/b", true},
		{"a/*", "a/b/c", false},
		{"a/**", "a/b/c", true},
		{"a/**", "ab/c", false},
		{"*/lib", "b/lib", true},
		{"b/lib", "b/lib", true},
		{"b/lib", "b/lib2", false},
	} {
		if got := matchRepository(c.pattern, c.name); got != c.want {
			t.Errorf("matchRepository(%q, %q) = %v", c.pattern, c.name, got)
		}
	}
	f := newMigrateFixture(t)
	dst := inmemory.New()
	rep := migrate(t, f.src, dst, MigrateOptions{Repositories: "b/**"})
	names, _, _ := newTestRegistry(t, dst).Catalog(context.Background(), "", -1)
	if rep.Repositories != 1 || len(names) != 1 || names[0] != "b/lib" {
		t.Errorf("copied %v (%d repositories)", names, rep.Repositories)
	}
	if _, err := NewMigration(f.src, dst, MigrateOptions{Repositories: "["}); err == nil {
		t.Error("a malformed pattern is accepted")
	}
}

// pushDuringWalk is a source that, the first time the tags of a/app are listed, has a new
// image pushed and tagged a/app:v1 (after the walk listed the revisions and layers).
type pushDuringWalk struct {
	driver.Driver
	once sync.Once
	push func()
}

func (p *pushDuringWalk) List(ctx context.Context, dir, after string, limit int) ([]driver.Info, error) {
	if strings.HasSuffix(dir, "a/app/_manifests/tags") {
		p.once.Do(p.push)
	}
	return p.Driver.List(ctx, dir, after, limit)
}

// TestMigrateLivePush: a tag moved during the walk to a manifest pushed meanwhile is left
// for the next run (Deferred, not a failure, no dangling tag), which copies it.
func TestMigrateLivePush(t *testing.T) {
	f := newMigrateFixture(t)
	reg := newTestRegistry(t, f.src)
	var pushed digest.Digest
	src := &pushDuringWalk{Driver: f.src, push: func() {
		cfg := putTestBlob(t, reg, "a/app", []byte(`{"late":true}`))
		layer := putTestBlob(t, reg, "a/app", randomBytes(t, 2000))
		pushed = putTestManifest(t, reg, "a/app", "v1", testImage{SchemaVersion: 2, MediaType: MediaTypeOCIManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}})
	}}
	dst := inmemory.New()
	rep := migrate(t, src, dst, MigrateOptions{})
	if rep.Failed != 0 || rep.Deferred != 1 {
		t.Fatalf("run during a push: %d failed %+v, %d deferred; want 0 and 1", rep.Failed, rep.Failures, rep.Deferred)
	}
	checkNoDangling(t, dst)
	out := newTestRegistry(t, dst)
	if _, err := out.ResolveTag(context.Background(), "a/app", "v1"); err == nil {
		t.Error("a/app:v1 written although its new manifest was not copied")
	}
	rep = migrate(t, src, dst, MigrateOptions{})
	if rep.Failed != 0 || rep.Deferred != 0 || rep.Tags != 1 {
		t.Fatalf("next run: %+v", rep.MigrateStats)
	}
	if d, err := out.ResolveTag(context.Background(), "a/app", "v1"); err != nil || d != pushed {
		t.Errorf("a/app:v1 after the next run: %s %v, want %s", d, err, pushed)
	}
	checkNoDangling(t, dst)
}

// TestMigrateTransientFailures: throttling and outages on either side are retried (by
// driver.WithRetry around both drivers, as registryd migrate wraps them), and a source
// stream that breaks mid-blob is copied again from the start: the run completes with no
// failure and the destination is whole.
func TestMigrateTransientFailures(t *testing.T) {
	f := newMigrateFixture(t)
	src, dst := fault.New(f.src), fault.New(inmemory.New())
	src.Add(fault.Rule{Methods: []string{fault.Stat, fault.List}, Times: 3, Err: driver.ErrThrottled})
	src.Add(fault.Rule{Contains: f.shared.Encoded(), BreakStream: true, BreakAfter: 1 << 20, Times: 1, Err: driver.ErrUnavailable})
	dst.Add(fault.Rule{Methods: []string{fault.Put}, Times: 3, Err: driver.ErrUnavailable})
	policy := driver.RetryPolicy{MaxAttempts: 4}
	rep := migrate(t, driver.WithRetry(src, policy), driver.WithRetry(dst, policy), MigrateOptions{})
	if rep.Failed != 0 || src.Injected() == 0 || dst.Injected() == 0 {
		t.Fatalf("failures %+v; injected %d in the source, %d in the destination", rep.Failures, src.Injected(), dst.Injected())
	}
	if rep.BytesStreamed < rep.BytesCopied+1<<20 {
		t.Errorf("streamed %d bytes for %d copied: the broken stream was not read again", rep.BytesStreamed, rep.BytesCopied)
	}
	want, got := tree(t, f.src), tree(t, dst.Inner())
	for p, b := range want {
		if got[p] != b {
			t.Errorf("%s differs or is missing", p)
		}
	}
}

// TestMigrateTagTargetLookup: a tag whose manifest is not in the revision listing is a
// dependency failure when the source has no such manifest, and the source's own error
// (not a dependency failure) when looking it up fails.
func TestMigrateTagTargetLookup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		statErr error
		want    error
		notWant error
	}{
		{name: "absent", want: ErrMigrateDependency},
		{name: "lookup fails", statErr: driver.ErrUnavailable, want: driver.ErrUnavailable, notWant: ErrMigrateDependency},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newMigrateFixture(t)
			ghost := digest.FromString("no such manifest")
			b := []byte(ghost.String())
			if err := f.src.Put(context.Background(), tagCurrentPath("a/app", "ghost"), bytes.NewReader(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
			src := fault.New(f.src)
			if tc.statErr != nil {
				src.Add(fault.Rule{Methods: []string{fault.Stat}, Contains: ghost.Encoded(), Err: tc.statErr})
			}
			rep := migrate(t, src, inmemory.New(), MigrateOptions{})
			var got []MigrateFailure
			for _, fl := range rep.Failures {
				if fl.Object == "tag a/app:ghost" {
					got = append(got, fl)
				}
			}
			if len(got) != 1 {
				t.Fatalf("failures of the tag: %+v (all: %+v)", got, rep.Failures)
			}
			if !errors.Is(got[0].Err, tc.want) {
				t.Errorf("failure %v, want %v", got[0].Err, tc.want)
			}
			if tc.notWant != nil && errors.Is(got[0].Err, tc.notWant) {
				t.Errorf("failure %v is %v", got[0].Err, tc.notWant)
			}
		})
	}
}

// TestMigrateSchema1Dependency: a schema1 manifest (fsLayers) is blocked when one of its
// blobs cannot be copied, like any other manifest: the references come from
// parseReferences, which knows schema1.
func TestMigrateSchema1Dependency(t *testing.T) {
	ctx := context.Background()
	src := inmemory.New()
	put := func(p string, b []byte) {
		t.Helper()
		if err := src.Put(ctx, p, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	layer := []byte("schema1 layer")
	ld := digest.FromBytes(layer)
	m := []byte(`{"schemaVersion":1,"name":"old/img","tag":"v1","fsLayers":[{"blobSum":"` + ld.String() + `"}]}`)
	md := digest.FromBytes(m)
	put(blobDataPath(ld), layer)
	put(blobDataPath(md), m)
	put(layerLinkPath("old/img", ld), []byte(ld.String()))
	put(revisionLinkPath("old/img", md), []byte(md.String()))
	fsrc := fault.New(src)
	fsrc.Add(fault.Rule{Methods: []string{fault.Reader}, Contains: ld.Encoded(), Err: driver.ErrPermission})
	dst := inmemory.New()
	rep := migrate(t, fsrc, dst, MigrateOptions{})
	if rep.Failed == 0 {
		t.Fatal("no failure reported")
	}
	if _, err := dst.Stat(ctx, revisionLinkPath("old/img", md)); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("revision link of the schema1 manifest written although its layer failed: %v", err)
	}
}

package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/inmemory"
)

// hookDriver calls before (when set) at the start of every call, with the method and
// path: tests use it to hold a call until another has happened.
type hookDriver struct {
	driver.Driver
	mu     sync.Mutex
	before func(method, p string)
}

func (h *hookDriver) hook(method, p string) {
	h.mu.Lock()
	f := h.before
	h.mu.Unlock()
	if f != nil {
		f(method, p)
	}
}

func (h *hookDriver) set(f func(method, p string)) {
	h.mu.Lock()
	h.before = f
	h.mu.Unlock()
}

func (h *hookDriver) Stat(ctx context.Context, p string) (driver.Info, error) {
	h.hook("Stat", p)
	return h.Driver.Stat(ctx, p)
}

func (h *hookDriver) List(ctx context.Context, dir, after string, limit int) ([]driver.Info, error) {
	h.hook("List", dir)
	return h.Driver.List(ctx, dir, after, limit)
}

func (h *hookDriver) Delete(ctx context.Context, p string) error {
	h.hook("Delete", p)
	return h.Driver.Delete(ctx, p)
}

func (h *hookDriver) Put(ctx context.Context, p string, r io.Reader, size int64) error {
	h.hook("Put", p)
	return h.Driver.Put(ctx, p, r, size)
}

// fixture is a registry over an in-memory store with helpers to push images.
type fixture struct {
	t      *testing.T
	mem    *inmemory.Driver
	hooks  *hookDriver
	r      *Registry
	bodies map[digest.Digest][]byte
}

func newFixture(t *testing.T) *fixture {
	mem := inmemory.New()
	h := &hookDriver{Driver: mem}
	r := newTestRegistry(t, h)
	// As a replica that runs the collector: pushes are protected from the start (and no
	// background check reads r.d, which tests swap).
	r.markCollected()
	return &fixture{t: t, mem: mem, hooks: h, r: r, bodies: map[digest.Digest][]byte{}}
}

func (f *fixture) blob(repo, content string) digest.Digest {
	f.t.Helper()
	d := digest.FromString(content)
	if _, err := f.r.PutBlob(context.Background(), repo, strings.NewReader(content), d); err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) desc(d digest.Digest, mt string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(f.bodies[d]))}
}

// manifest pushes a manifest body under ref ("" : by digest) and returns its digest.
func (f *fixture) manifest(repo, ref string, v any) digest.Digest {
	f.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		f.t.Fatal(err)
	}
	d := digest.FromBytes(body)
	if ref == "" {
		ref = d.String()
	}
	f.bodies[d] = body
	if _, err := f.r.PutManifest(context.Background(), repo, ref, body, "", nil); err != nil {
		f.t.Fatalf("push manifest %s:%s: %v", repo, ref, err)
	}
	return d
}

// image pushes an image whose config and layers hold the given contents (the first
// is the config).
func (f *fixture) image(repo, ref string, subject *digest.Digest, contents ...string) digest.Digest {
	f.t.Helper()
	m := map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIManifest}
	var layers []ocispec.Descriptor
	for i, c := range contents {
		d := f.blob(repo, c)
		desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: int64(len(c))}
		if i == 0 {
			m["config"] = desc
		} else {
			layers = append(layers, desc)
		}
	}
	m["layers"] = layers
	if subject != nil {
		m["subject"] = f.desc(*subject, MediaTypeOCIManifest)
	}
	return f.manifest(repo, ref, m)
}

func (f *fixture) index(repo, ref string, children ...digest.Digest) digest.Digest {
	f.t.Helper()
	var ms []ocispec.Descriptor
	for _, c := range children {
		ms = append(ms, f.desc(c, MediaTypeOCIManifest))
	}
	return f.manifest(repo, ref, map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIIndex, "manifests": ms})
}

// opts are the options of a test run: everything written before the run is past its grace.
func testGCOptions() GCOptions {
	return GCOptions{GracePeriod: time.Nanosecond}
}

// gc runs the collector, after a pause so that every object written so far is older
// than the run's start.
func (f *fixture) gc(opts GCOptions) *GCReport {
	f.t.Helper()
	rep, err := f.gcErr(opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return rep
}

func (f *fixture) gcErr(opts GCOptions) (*GCReport, error) {
	time.Sleep(5 * time.Millisecond)
	return f.r.collect(context.Background(), opts, gcClock{})
}

func (f *fixture) exists(p string) bool {
	f.t.Helper()
	_, err := f.mem.Stat(context.Background(), p)
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		f.t.Fatal(err)
	}
	return err == nil
}

func (f *fixture) hasManifest(repo string, d digest.Digest) bool {
	return f.exists(revisionLinkPath(repo, d))
}

func (f *fixture) hasLink(repo string, d digest.Digest) bool { return f.exists(layerLinkPath(repo, d)) }

func (f *fixture) hasBlob(d digest.Digest) bool { return f.exists(blobDataPath(d)) }

// checkIntegrity fails the test unless every tag resolves and every manifest a
// repository holds has everything it references: layer links, blob bytes, child
// manifests (what an fsck checks).
func (f *fixture) checkIntegrity() {
	f.t.Helper()
	ctx := context.Background()
	repos, _, err := f.r.Catalog(ctx, "", -1)
	if err != nil {
		f.t.Fatal(err)
	}
	g := &gcRun{r: f.r, c: &gcDriver{Driver: f.mem}}
	for _, repo := range repos {
		tags, err := f.r.allTags(ctx, repo)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, tag := range tags {
			if _, err := f.r.GetManifest(ctx, repo, tag); err != nil {
				f.t.Errorf("%s:%s does not resolve: %v", repo, tag, err)
			}
		}
		revs, err := g.listDigests(ctx, revisionsDir(repo))
		if err != nil {
			f.t.Fatal(err)
		}
		for _, d := range revs {
			refs, err := f.r.manifestReferences(ctx, d)
			if err != nil {
				f.t.Errorf("%s@%s: %v", repo, d, err)
				continue
			}
			for _, b := range refs.Blobs {
				if !f.hasLink(repo, b) || !f.hasBlob(b) {
					f.t.Errorf("%s@%s: blob %s missing (link %v, data %v)", repo, d, b, f.hasLink(repo, b), f.hasBlob(b))
				}
			}
			for _, c := range refs.Manifests {
				if !f.hasManifest(repo, c) {
					f.t.Errorf("%s@%s: child %s missing", repo, d, c)
				}
			}
		}
	}
}

// deletedPaths returns the sorted paths of a plan's items.
func planPaths(p *GCPlan) []string {
	var out []string
	for _, it := range p.Items {
		out = append(out, it.Kind+" "+it.Path)
	}
	sort.Strings(out)
	return out
}

// TestGCSweepsUntaggedAndOrphans: an untagged image goes with the layer links and blobs
// only it used; the tagged image, its shared layer and its blobs stay; an orphan blob and
// an orphan link go; objects younger than the grace period stay.
func TestGCSweepsUntaggedAndOrphans(t *testing.T) {
	f := newFixture(t)
	kept := f.image("a", "v1", nil, "cfg1", "shared", "only1")
	gone := f.image("a", "", nil, "cfg2", "shared", "only2")
	orphan := f.blob("a", "orphan")
	if err := f.r.DeleteBlob(context.Background(), "a", orphan); err != nil {
		t.Fatal(err)
	}
	orphanLink := f.blob("a", "orphan link")

	rep := f.gc(testGCOptions())
	f.checkIntegrity()
	if !f.hasManifest("a", kept) || f.hasManifest("a", gone) {
		t.Fatalf("manifests: kept %v, untagged %v", f.hasManifest("a", kept), f.hasManifest("a", gone))
	}
	for _, c := range []string{"cfg1", "shared", "only1"} {
		if d := digest.FromString(c); !f.hasLink("a", d) || !f.hasBlob(d) {
			t.Errorf("%s: link %v blob %v, want both", c, f.hasLink("a", d), f.hasBlob(d))
		}
	}
	for _, d := range []digest.Digest{digest.FromString("cfg2"), digest.FromString("only2"), orphanLink, orphan, gone} {
		if f.hasLink("a", d) || f.hasBlob(d) {
			t.Errorf("%s: link %v blob %v, want neither", d, f.hasLink("a", d), f.hasBlob(d))
		}
	}
	want := map[string]int{GCKindManifest: 1, GCKindLink: 3, GCKindBlob: 5}
	for k, n := range want {
		if rep.Deleted[k] != n {
			t.Errorf("deleted %s = %d, want %d (%v)", k, rep.Deleted[k], n, rep.Deleted)
		}
	}
	if f.exists(gcSweepingPath()) {
		t.Error("_gc/sweeping left behind")
	}

	// A second run finds nothing; with a grace period of an hour the first would have
	// found nothing either.
	if rep := f.gc(testGCOptions()); len(rep.Plan.Items) != 0 {
		t.Errorf("second run plans %v", planPaths(rep.Plan))
	}
	f2 := newFixture(t)
	f2.image("a", "", nil, "x", "y")
	if rep := f2.gc(GCOptions{GracePeriod: time.Hour}); len(rep.Plan.Items) != 0 {
		t.Errorf("within grace: plans %v", planPaths(rep.Plan))
	}
	if rep := f2.gc(GCOptions{GracePeriod: time.Nanosecond, KeepUntagged: true}); rep.Plan.Counts[GCKindManifest] != 0 {
		t.Errorf("KeepUntagged: plans %v", planPaths(rep.Plan))
	}
}

// TestGCMultiArchIndex: the untagged children of a tagged index are kept; those of an
// untagged index go with it; a child younger than the untagged grace period stays (an
// index pushed after its children).
func TestGCMultiArchIndex(t *testing.T) {
	f := newFixture(t)
	amd := f.image("a", "", nil, "cfg-amd", "l-amd")
	arm := f.image("a", "", nil, "cfg-arm", "l-arm")
	idx := f.index("a", "latest", amd, arm)
	old1 := f.image("a", "", nil, "cfg-old1", "l-old1")
	oldIdx := f.index("a", "", old1)
	f.gc(testGCOptions())
	f.checkIntegrity()
	for _, d := range []digest.Digest{amd, arm, idx} {
		if !f.hasManifest("a", d) || !f.hasBlob(d) {
			t.Errorf("kept manifest %s swept", d)
		}
	}
	for _, d := range []digest.Digest{old1, oldIdx} {
		if f.hasManifest("a", d) || f.hasBlob(d) {
			t.Errorf("untagged manifest %s kept", d)
		}
	}
	if f.hasLink("a", digest.FromString("l-old1")) || !f.hasLink("a", digest.FromString("l-arm")) {
		t.Error("layer links of the swept child kept, or of a kept child swept")
	}

	// Children pushed, index not yet: kept within the untagged grace period.
	f2 := newFixture(t)
	c := f2.image("a", "", nil, "cfg", "l")
	f2.gc(GCOptions{GracePeriod: time.Nanosecond, UntaggedGracePeriod: time.Hour})
	if !f2.hasManifest("a", c) || !f2.hasLink("a", digest.FromString("l")) {
		t.Error("young untagged child swept")
	}
	f2.index("a", "multi", c)
	f2.checkIntegrity()
}

// TestGCReferrers: a referrer of a tagged manifest is kept though untagged; a referrer of
// a swept manifest goes with it (its referrer record too); a referrer pushed before its
// subject survives within the untagged grace period.
func TestGCReferrers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	subj := f.image("a", "v1", nil, "cfg", "layer")
	sig := f.image("a", "", &subj, "sig-cfg", "sig")
	sbom := f.image("a", "", &sig, "sbom-cfg", "sbom") // a referrer of a referrer
	gone := f.image("a", "", nil, "cfg-u", "layer-u")
	goneSig := f.image("a", "", &gone, "sig-cfg-u", "sig-u")
	f.gc(testGCOptions())
	f.checkIntegrity()
	for _, d := range []digest.Digest{subj, sig, sbom} {
		if !f.hasManifest("a", d) {
			t.Errorf("kept %s swept", d)
		}
	}
	for _, d := range []digest.Digest{gone, goneSig} {
		if f.hasManifest("a", d) {
			t.Errorf("untagged %s kept", d)
		}
	}
	if f.exists(referrerPath("a", gone, goneSig)) || !f.exists(referrerPath("a", subj, sig)) {
		t.Error("referrer records: swept one kept or kept one swept")
	}
	refs, err := f.r.Referrers(ctx, "a", subj, "")
	if err != nil || len(refs) != 1 || refs[0].Digest != sig {
		t.Fatalf("referrers of the subject: %v %v", refs, err)
	}

	// A referrer pushed before its subject, within the untagged grace period.
	f2 := newFixture(t)
	future := digest.FromString("not pushed yet")
	early := f2.image("a", "", &future, "c", "s")
	f2.gc(GCOptions{GracePeriod: time.Nanosecond, UntaggedGracePeriod: time.Hour})
	if !f2.hasManifest("a", early) {
		t.Error("young referrer of a subject not pushed yet swept")
	}
}

// TestGCUntaggedHereTaggedThere: a digest untagged in A and tagged in B is swept from A
// with A's layer links, and A stays consistent; B keeps it and the blobs stay.
func TestGCUntaggedHereTaggedThere(t *testing.T) {
	f := newFixture(t)
	da := f.image("a", "", nil, "cfg", "layer")
	db := f.image("b", "v1", nil, "cfg", "layer")
	if da != db {
		t.Fatal("not the same manifest")
	}
	// Two orders of the repositories' names: a before b and the reverse.
	dz := f.image("z", "", nil, "cfg", "layer")
	if dz != da {
		t.Fatal("not the same manifest")
	}
	f.gc(testGCOptions())
	f.checkIntegrity()
	for _, repo := range []string{"a", "z"} {
		if f.hasManifest(repo, da) || f.hasLink(repo, digest.FromString("layer")) || f.hasLink(repo, digest.FromString("cfg")) {
			t.Errorf("%s: untagged manifest or its links kept", repo)
		}
	}
	if !f.hasManifest("b", db) || !f.hasLink("b", digest.FromString("layer")) || !f.hasBlob(digest.FromString("layer")) || !f.hasBlob(db) {
		t.Error("b: tagged image swept")
	}
	if _, err := f.r.GetManifest(context.Background(), "b", "v1"); err != nil {
		t.Fatal(err)
	}
}

// TestGCDryRunPlan: a dry run changes nothing but the plan it writes; the real run then
// deletes exactly the plan's items, with as many backend calls as the plan says; applying
// a plan deletes only its items, after re-verifying them.
func TestGCDryRunPlan(t *testing.T) {
	build := func(t *testing.T) *fixture {
		f := newFixture(t)
		f.image("a", "v1", nil, "cfg1", "shared", "only1")
		f.image("a", "", nil, "cfg2", "shared", "only2")
		sub := f.image("a", "", nil, "cfg3", "only3")
		f.image("a", "", &sub, "sigc", "sig")
		f.index("a", "", f.image("a", "", nil, "c4", "l4"))
		f.image("b", "", nil, "cfg2", "shared", "only2")
		f.image("b", "keep", nil, "cfg5", "l5")
		f.blob("c", "lonely")
		old := f.image("d", "old", nil, "cd", "ld")
		_ = old
		f.image("d", "new", nil, "cd2", "ld2")
		return f
	}
	f := build(t)
	before := snapshot(t, f.mem)
	opts := testGCOptions()
	opts.DryRun = true
	opts.Retention = []RetentionRule{{Repository: "d", KeepLast: 1}}
	dry := f.gc(opts)
	after := snapshot(t, f.mem)
	delete(after, GCPlanPath())
	if !maps.Equal(before, after) {
		t.Fatalf("dry run changed the store")
	}
	stored, err := f.r.ReadGCPlan(context.Background())
	if err != nil || !slices.Equal(planPaths(stored), planPaths(dry.Plan)) {
		t.Fatalf("stored plan differs: %v", err)
	}
	if dry.Plan.Counts[GCKindTag] != 1 || dry.Plan.Counts[GCKindManifest] < 5 || dry.Plan.Bytes == 0 {
		t.Fatalf("plan: %v", dry.Plan.Counts)
	}

	opts.DryRun = false
	real := f.gc(opts)
	if got, want := deletedPaths(real), planPaths(dry.Plan); !slices.Equal(got, want) {
		t.Fatalf("real run deleted\n%v\nplan\n%v", got, want)
	}
	if real.BackendCalls != dry.Plan.BackendCalls {
		t.Errorf("real run made %d backend calls, the plan said %d", real.BackendCalls, dry.Plan.BackendCalls)
	}
	f.checkIntegrity()

	// Apply: a plan from a dry run, then the registry changes: a planned manifest is
	// tagged (no longer qualifies), a new orphan appears (not in the plan).
	f = build(t)
	opts.DryRun = true
	dry = f.gc(opts)
	var victim GCItem
	for _, it := range dry.Plan.Items {
		if it.Kind == GCKindManifest && it.Repository == "b" {
			victim = it
		}
	}
	if _, err := f.r.PutManifest(context.Background(), "b", "rescued", f.bodies[victim.Digest], "", nil); err != nil {
		t.Fatal(err)
	}
	newOrphan := f.blob("c", "new orphan")
	_ = f.r.DeleteBlob(context.Background(), "c", newOrphan)
	opts.DryRun, opts.Apply = false, dry.Plan
	applied := f.gc(opts)
	if !f.hasManifest("b", victim.Digest) || !f.hasBlob(newOrphan) {
		t.Fatal("applying a plan deleted a re-tagged manifest or an item outside the plan")
	}
	inPlan := map[string]bool{}
	for _, p := range planPaths(dry.Plan) {
		inPlan[p] = true
	}
	for _, p := range deletedPaths(applied) {
		if !inPlan[p] {
			t.Errorf("applied run deleted %s, not in the plan", p)
		}
	}
	f.checkIntegrity()
}

func deletedPaths(r *GCReport) []string {
	return planPaths(&GCPlan{Items: r.DeletedItems})
}

func snapshot(t *testing.T, d driver.Driver) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(dir string)
	walk = func(dir string) {
		l, err := d.List(context.Background(), dir, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, fi := range l {
			if fi.IsDir {
				walk(fi.Path)
				continue
			}
			out[fi.Path] = fmt.Sprint(fi.ModTime.UnixNano(), fi.Size)
		}
	}
	walk("")
	return out
}

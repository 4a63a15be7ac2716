package storage

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
)

// repoMark is what the mark phase learnt about one repository.
type repoMark struct {
	name string
	// tags maps each tag to its current manifest (tags retention deletes in a dry run
	// left out).
	tags map[string]digest.Digest
	// allTags lists every tag directory.
	allTags []string
	// revs are the manifests the repository holds (revision links).
	revs gcSet
	// referrers maps a subject to the repository's manifests that name it.
	referrers map[digest.Digest][]digest.Digest
	// kept are the manifests kept in this repository.
	kept gcSet
	// unknown is set when a kept manifest's references cannot be known: nothing of the
	// repository is swept.
	unknown bool
	// manifests and links are the deletion candidates.
	manifests []*manifestCand
	links     []GCItem
	// relistCalls is how many backend calls listing the revisions took.
	relistCalls int64
}

// manifestCand is an untagged manifest to sweep from a repository.
type manifestCand struct {
	d       digest.Digest
	subject digest.Digest
	// tagIndex lists the tags whose history names the manifest.
	tagIndex []string
}

// items returns the plan items of the repository: per manifest its referrer record,
// tag index entries and revision link (the order of deletion: the revision link last,
// so a run stopped half-way leaves the manifest to be found again), then the layer links.
func (rm *repoMark) items() []GCItem {
	var out []GCItem
	for _, m := range rm.manifests {
		out = append(out, m.items(rm.name)...)
	}
	return append(out, rm.links...)
}

func (m *manifestCand) items(repo string) []GCItem {
	var out []GCItem
	if m.subject != "" {
		out = append(out, GCItem{Kind: GCKindReferrer, Repository: repo, Digest: m.d, Path: referrerPath(repo, m.subject, m.d)})
	}
	for _, t := range m.tagIndex {
		out = append(out, GCItem{Kind: GCKindTagIndex, Repository: repo, Tag: t, Digest: m.d, Path: tagIndexLinkPath(repo, t, m.d)})
	}
	return append(out, GCItem{Kind: GCKindManifest, Repository: repo, Digest: m.d, Path: revisionLinkPath(repo, m.d)})
}

// young reports whether an object last written at t is younger than grace, or was
// written since the run began.
func (g *gcRun) young(t time.Time, grace time.Duration) bool {
	return !t.Before(g.t0.Add(-grace))
}

// mark walks every repository, then the blobs, and records the deletion candidates.
func (g *gcRun) mark(ctx context.Context) error {
	repos, err := g.repositories(ctx)
	if err != nil {
		return err
	}
	g.report.Repositories = len(repos)
	for _, name := range repos {
		rm, err := g.markRepo(ctx, name)
		if err != nil {
			return fmt.Errorf("repository %s: %w", name, err)
		}
		g.repos = append(g.repos, rm)
		g.report.KeptManifests += len(rm.kept)
		g.sweepCalls += rm.sweepCalls()
	}
	if err := g.markBlobs(ctx); err != nil {
		return err
	}
	if err := g.listTouches(ctx); err != nil {
		return err
	}
	return nil
}

// repositories lists every repository with the walker.
func (g *gcRun) repositories(ctx context.Context) ([]string, error) {
	var out []string
	for name, err := range g.r.Repositories(ctx, "") {
		if err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}

// sweepCalls is the number of backend calls sweeping the repository's candidates takes
// when nothing changed since mark: per batch the _gc/sweeping write and delete and the
// revisions' listing; per manifest a Stat and its deletes; per layer link two Stats and a
// delete.
func (rm *repoMark) sweepCalls() int64 {
	var n int64
	items := 0
	for _, m := range rm.manifests {
		n += 1 + int64(len(m.items(rm.name)))
		items++
	}
	n += 3 * int64(len(rm.links))
	items += len(rm.links)
	if items > 0 {
		n += int64(batches(items)) * (2 + rm.relistCalls)
	}
	return n
}

// batches is the number of sweep batches n deletions take.
func batches(n int) int { return (n + sweepBatch - 1) / sweepBatch }

// markRepo marks one repository.
func (g *gcRun) markRepo(ctx context.Context, name string) (*repoMark, error) {
	rm := &repoMark{name: name, tags: map[string]digest.Digest{}, kept: gcSet{}, referrers: map[digest.Digest][]digest.Digest{}}
	tags, err := g.r.subdirs(ctx, tagsDir(name))
	if err != nil {
		return nil, err
	}
	rm.allTags = tags
	targets := make([]digest.Digest, len(tags))
	if err := parallel(len(tags), func(i int) error {
		if g.retentionDeletes(name, tags[i]) {
			return nil
		}
		d, err := g.r.readLink(ctx, tagCurrentPath(name, tags[i]))
		if errors.Is(err, driver.ErrNotFound) {
			return nil // a tag directory without a current link resolves to nothing
		}
		if err != nil {
			return fmt.Errorf("read tag %s: %w", tags[i], err)
		}
		targets[i] = d
		return nil
	}); err != nil {
		return nil, err
	}
	var roots []digest.Digest
	for i, t := range tags {
		if targets[i] != "" {
			rm.tags[t] = targets[i]
			roots = append(roots, targets[i])
		}
	}
	before := g.c.n.Load()
	revs, err := g.listDigests(ctx, revisionsDir(name))
	if err != nil {
		return nil, err
	}
	rm.relistCalls = g.c.n.Load() - before
	rm.revs = gcSet{}
	for _, d := range revs {
		rm.revs[d] = true
	}
	if err := g.readRefs(ctx, append(revs, roots...)); err != nil {
		return nil, err
	}
	g.indexReferrers(rm, revs)
	if g.opts.KeepUntagged {
		roots = append(roots, revs...)
	}
	g.closure(rm, roots)
	// Untagged manifests: those younger than the untagged grace period are roots too.
	var unkept []digest.Digest
	for _, d := range revs {
		if !rm.kept[d] {
			unkept = append(unkept, d)
		}
	}
	keep := make([]bool, len(unkept))
	if err := parallel(len(unkept), func(i int) error {
		d := unkept[i]
		if e := g.refs[d]; e.unknown || !g.allowed(revisionLinkPath(name, d)) {
			keep[i] = true
			return nil
		}
		fi, err := g.c.Stat(ctx, revisionLinkPath(name, d))
		if errors.Is(err, driver.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stat revision %s: %w", d, err)
		}
		keep[i] = g.young(fi.ModTime, g.opts.UntaggedGracePeriod)
		return nil
	}); err != nil {
		return nil, err
	}
	roots = roots[:0]
	for i, d := range unkept {
		if keep[i] {
			roots = append(roots, d)
		}
	}
	g.closure(rm, roots)
	layers, err := g.listDigests(ctx, layersDir(name))
	if err != nil {
		return nil, err
	}
	if rm.unknown {
		g.log.WarnContext(ctx, "gc: a kept manifest's references cannot be read; nothing is swept in the repository", "repository", name)
		for d := range rm.revs {
			rm.kept[d] = true
		}
		g.keepRepo(rm, layers)
		return rm, nil
	}
	for _, d := range unkept {
		if rm.kept[d] || !rm.revs[d] {
			continue
		}
		rm.manifests = append(rm.manifests, &manifestCand{d: d, subject: g.refs[d].refs.Subject})
	}
	if err := g.markTagIndex(ctx, rm); err != nil {
		return nil, err
	}
	// Layer links no kept manifest of the repository references.
	needed := g.neededBlobs(rm)
	var cands []digest.Digest
	for _, d := range layers {
		if !needed[d] && g.allowed(layerLinkPath(name, d)) {
			cands = append(cands, d)
		}
	}
	del := make([]bool, len(cands))
	if err := parallel(len(cands), func(i int) error {
		fi, err := g.c.Stat(ctx, layerLinkPath(name, cands[i]))
		if errors.Is(err, driver.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stat layer link %s: %w", cands[i], err)
		}
		del[i] = !g.young(fi.ModTime, g.opts.GracePeriod)
		return nil
	}); err != nil {
		return nil, err
	}
	doomed := gcSet{}
	for i, d := range cands {
		if del[i] {
			doomed[d] = true
			rm.links = append(rm.links, GCItem{Kind: GCKindLink, Repository: name, Digest: d, Path: layerLinkPath(name, d)})
		}
	}
	var surviving []digest.Digest
	for _, d := range layers {
		if !doomed[d] {
			surviving = append(surviving, d)
		}
	}
	g.keepRepo(rm, surviving)
	return rm, nil
}

// keepRepo adds what the repository keeps to the global blob marks: its kept manifests,
// the blobs they reference, and the layer links that stay.
func (g *gcRun) keepRepo(rm *repoMark, links []digest.Digest) {
	for d := range rm.kept {
		g.keepBlobs[d] = true
	}
	for d := range g.neededBlobs(rm) {
		g.keepBlobs[d] = true
	}
	for _, d := range links {
		g.keepBlobs[d] = true
	}
}

// neededBlobs returns the blobs the kept manifests of the repository reference.
func (g *gcRun) neededBlobs(rm *repoMark) gcSet {
	out := gcSet{}
	for d := range rm.kept {
		if e := g.refs[d]; e != nil {
			for _, b := range e.refs.Blobs {
				out[b] = true
			}
		}
	}
	return out
}

// readRefs reads the references of every manifest of ds not read yet in this run.
func (g *gcRun) readRefs(ctx context.Context, ds []digest.Digest) error {
	var todo []digest.Digest
	seen := gcSet{}
	g.refsMu.Lock()
	for _, d := range ds {
		if _, ok := g.refs[d]; !ok && !seen[d] {
			todo = append(todo, d)
			seen[d] = true
		}
	}
	g.refsMu.Unlock()
	return parallel(len(todo), func(i int) error {
		_, err := g.manifestRefs(ctx, todo[i])
		return err
	})
}

// indexReferrers records which of the repository's manifests name a subject.
func (g *gcRun) indexReferrers(rm *repoMark, ds []digest.Digest) {
	for _, d := range ds {
		if s := g.refs[d].refs.Subject; s != "" {
			rm.referrers[s] = append(rm.referrers[s], d)
		}
	}
}

// closure keeps roots and, transitively, the index children and referrers of what is
// kept. A kept manifest whose references are unknown marks the repository unknown.
func (g *gcRun) closure(rm *repoMark, roots []digest.Digest) {
	queue := append([]digest.Digest(nil), roots...)
	for len(queue) > 0 {
		d := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if rm.kept[d] {
			continue
		}
		rm.kept[d] = true
		queue = append(queue, rm.referrers[d]...)
		e := g.refs[d]
		if e == nil {
			// A child the repository does not hold (a sparse index): it needs nothing of
			// the repository.
			continue
		}
		if e.unknown || (e.missing && rm.revs[d]) {
			// A manifest the repository holds whose bytes are missing or unreadable:
			// what it needs is unknown.
			rm.unknown = true
		}
		queue = append(queue, e.refs.Manifests...)
	}
}

// markTagIndex finds the tag history entries of the manifests to sweep.
func (g *gcRun) markTagIndex(ctx context.Context, rm *repoMark) error {
	if len(rm.manifests) == 0 {
		return nil
	}
	cand := map[digest.Digest]*manifestCand{}
	for _, m := range rm.manifests {
		cand[m.d] = m
	}
	var mu sync.Mutex
	return parallel(len(rm.allTags), func(i int) error {
		tag := rm.allTags[i]
		if g.retentionDeletes(rm.name, tag) {
			return nil // the whole tag goes
		}
		ds, err := g.listDigests(ctx, tagIndexDir(rm.name, tag))
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, d := range ds {
			if m := cand[d]; m != nil && g.allowed(tagIndexLinkPath(rm.name, tag, d)) {
				m.tagIndex = append(m.tagIndex, tag)
			}
		}
		return nil
	})
}

// markBlobs lists every stored blob and records those nothing keeps that are older than
// the grace period.
func (g *gcRun) markBlobs(ctx context.Context) error {
	algs, err := g.listAll(ctx, blobsDir())
	if err != nil {
		return err
	}
	var prefixes []string
	for _, a := range algs {
		if !a.IsDir {
			continue
		}
		l, err := g.listAll(ctx, a.Path)
		if err != nil {
			return err
		}
		for _, p := range l {
			if p.IsDir {
				prefixes = append(prefixes, p.Path)
			}
		}
	}
	found := make([][]digest.Digest, len(prefixes))
	if err := parallel(len(prefixes), func(i int) error {
		l, err := g.listAll(ctx, prefixes[i])
		if err != nil {
			return err
		}
		alg := path.Base(path.Dir(prefixes[i]))
		for _, h := range l {
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg), path.Base(h.Path))
			if h.IsDir && d.Validate() == nil && blobDataPath(d) == h.Path+"/data" {
				found[i] = append(found[i], d)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	var cands []digest.Digest
	total := 0
	for _, ds := range found {
		for _, d := range ds {
			total++
			if !g.keepBlobs[d] && g.allowed(blobDataPath(d)) {
				cands = append(cands, d)
			}
		}
	}
	items := make([]*GCItem, len(cands))
	if err := parallel(len(cands), func(i int) error {
		fi, err := g.c.Stat(ctx, blobDataPath(cands[i]))
		if errors.Is(err, driver.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stat blob %s: %w", cands[i], err)
		}
		if !g.young(fi.ModTime, g.opts.GracePeriod) {
			items[i] = &GCItem{Kind: GCKindBlob, Digest: cands[i], Path: blobDataPath(cands[i]), Size: fi.Size}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, it := range items {
		if it != nil {
			g.blobs = append(g.blobs, *it)
		}
	}
	g.report.KeptBlobs = total - len(g.blobs)
	g.sweepCalls += 3*int64(len(g.blobs)) + 2*int64(batches(len(g.blobs)))
	return nil
}

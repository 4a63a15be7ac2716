package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
)

// batch is one sweep batch: it holds _gc/sweeping from its start to its end.
type batch struct {
	g     *gcRun
	start time.Time // local time before _gc/sweeping was written
}

// beginBatch writes _gc/sweeping; every deletion of the batch happens after it.
func (g *gcRun) beginBatch(ctx context.Context) (*batch, error) {
	b := &batch{g: g, start: time.Now()}
	body := []byte(b.start.UTC().Format(time.RFC3339Nano))
	if err := g.put(ctx, gcSweepingPath(), body); err != nil {
		return nil, fmt.Errorf("begin sweep batch: %w", err)
	}
	return b, nil
}

// end removes _gc/sweeping, also when ctx was cancelled (a run stopped by its caller
// does not leave pushes waiting for the marker to go stale).
func (b *batch) end(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := b.g.c.Delete(ctx, gcSweepingPath()); err != nil && !errors.Is(err, driver.ErrNotFound) {
		return fmt.Errorf("end sweep batch: %w", err)
	}
	return nil
}

// del deletes the object of item it, after checking the lease's fence and the batch's
// time bound. It is safe for concurrent use. An object already gone is not an error and not counted.
func (b *batch) del(ctx context.Context, it GCItem) error {
	if time.Since(b.start) >= sweepBound {
		return errStaleBatch
	}
	if f := b.g.opts.Fence; f != nil {
		if err := f(); err != nil {
			return fmt.Errorf("gc fence: %w", err)
		}
	}
	err := b.g.c.Delete(ctx, it.Path)
	if errors.Is(err, driver.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", it.Path, err)
	}
	b.g.reportMu.Lock()
	defer b.g.reportMu.Unlock()
	b.g.report.DeletedItems = append(b.g.report.DeletedItems, it)
	b.g.report.Deleted[it.Kind]++
	b.g.report.DeletedBytes += it.Size
	return nil
}

// sweep deletes what mark selected, repository by repository, then the blobs, each in
// batches of at most sweepBatch deletions, re-verifying each just before.
func (g *gcRun) sweep(ctx context.Context) error {
	for _, rm := range g.repos {
		if err := g.sweepRepo(ctx, rm); err != nil {
			return fmt.Errorf("repository %s: %w", rm.name, err)
		}
	}
	for i := 0; i < len(g.blobs); i += sweepBatch {
		if err := g.sweepBlobs(ctx, g.blobs[i:min(i+sweepBatch, len(g.blobs))]); err != nil {
			return err
		}
	}
	return nil
}

// sweepRepo sweeps the manifests and layer links of one repository in batches.
func (g *gcRun) sweepRepo(ctx context.Context, rm *repoMark) error {
	ms, ls := rm.manifests, rm.links
	for len(ms) > 0 || len(ls) > 0 {
		n := min(len(ms), sweepBatch)
		bm := ms[:n]
		bl := ls[:min(len(ls), sweepBatch-n)]
		ms, ls = ms[n:], ls[len(bl):]
		if err := g.sweepRepoBatch(ctx, rm, bm, bl); err != nil {
			return err
		}
	}
	return nil
}

// sweepRepoBatch is one batch of a repository's sweep. Under _gc/sweeping it lists the
// repository's revisions again (a manifest pushed since mark is kept with everything it
// references), re-reads each candidate's revision link (one rewritten since the run
// began, or now younger than the untagged grace period, is kept: a push re-tagged it),
// then deletes the remaining manifests, and the layer links no kept manifest needs whose
// link was not rewritten and whose blob no push touched since the run began.
func (g *gcRun) sweepRepoBatch(ctx context.Context, rm *repoMark, ms []*manifestCand, ls []GCItem) (err error) {
	b, err := g.beginBatch(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if eerr := b.end(ctx); err == nil {
			err = eerr
		}
	}()
	revs, err := g.listDigests(ctx, revisionsDir(rm.name))
	if err != nil {
		return err
	}
	var fresh []digest.Digest
	for _, d := range revs {
		if !rm.revs[d] {
			fresh = append(fresh, d)
			rm.revs[d] = true
		}
	}
	if len(fresh) > 0 {
		if err := g.readRefs(ctx, fresh); err != nil {
			return err
		}
		g.indexReferrers(rm, fresh)
	}
	// Re-verify the manifests, then keep what the kept ones need.
	still := make([]bool, len(ms))
	if err := parallel(len(ms), func(i int) error {
		fi, err := g.c.Stat(ctx, revisionLinkPath(rm.name, ms[i].d))
		if errors.Is(err, driver.ErrNotFound) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("stat revision %s: %w", ms[i].d, err)
		}
		still[i] = fi.ModTime.Before(g.t0) && !g.young(fi.ModTime, g.opts.UntaggedGracePeriod)
		return nil
	}); err != nil {
		return err
	}
	roots := append([]digest.Digest(nil), fresh...)
	for i, m := range ms {
		if !still[i] && rm.revs[m.d] {
			roots = append(roots, m.d)
		}
	}
	g.closure(rm, roots)
	if rm.unknown {
		g.log.WarnContext(ctx, "gc: a manifest pushed during the run cannot be read; nothing more is swept in the repository", "repository", rm.name)
		g.report.Skipped += len(ms) + len(ls)
		for d := range rm.revs {
			g.keepBlobs[d] = true
		}
		for _, it := range ls {
			g.keepBlobs[it.Digest] = true
		}
		return nil
	}
	needed := g.neededBlobs(rm)
	for d := range rm.kept {
		g.keepBlobs[d] = true
	}
	for d := range needed {
		g.keepBlobs[d] = true
	}
	var doomed []*manifestCand
	for _, m := range ms {
		if rm.kept[m.d] {
			g.report.Skipped++
			continue
		}
		doomed = append(doomed, m)
	}
	// Manifests in parallel, the objects of one in order (its revision link last).
	if err := parallel(len(doomed), func(i int) error {
		for _, it := range doomed[i].items(rm.name) {
			if err := b.del(ctx, it); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	var links []GCItem
	for _, it := range ls {
		if needed[it.Digest] {
			g.report.Skipped++
			continue
		}
		links = append(links, it)
	}
	ok := make([]bool, len(links))
	if err := parallel(len(links), func(i int) error {
		var err error
		ok[i], err = g.linkStillDoomed(ctx, links[i])
		return err
	}); err != nil {
		return err
	}
	var gone []GCItem
	for i, it := range links {
		if !ok[i] {
			g.report.Skipped++
			g.keepBlobs[it.Digest] = true
			continue
		}
		gone = append(gone, it)
	}
	return b.delAll(ctx, gone)
}

// delAll deletes the items in parallel.
func (b *batch) delAll(ctx context.Context, items []GCItem) error {
	return parallel(len(items), func(i int) error { return b.del(ctx, items[i]) })
}

// linkStillDoomed re-reads a layer link and its blob's push marker: the link may go if it
// was not rewritten since the run began, is older than the grace period, and no push
// touched the blob since the run began.
func (g *gcRun) linkStillDoomed(ctx context.Context, it GCItem) (bool, error) {
	fi, err := g.c.Stat(ctx, it.Path)
	if errors.Is(err, driver.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat layer link %s: %w", it.Digest, err)
	}
	if !fi.ModTime.Before(g.t0) || g.young(fi.ModTime, g.opts.GracePeriod) {
		return false, nil
	}
	return g.untouched(ctx, it.Digest)
}

// untouched reports whether no push found or linked blob d since the run began.
func (g *gcRun) untouched(ctx context.Context, d digest.Digest) (bool, error) {
	fi, err := g.c.Stat(ctx, gcTouchedPath(d))
	if errors.Is(err, driver.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat push marker %s: %w", d, err)
	}
	return fi.ModTime.Before(g.t0.Add(-g.clock.touchMargin)), nil
}

// sweepBlobs is one batch of the blob sweep: each blob nothing kept is deleted unless a
// push touched it since the run began or its data was rewritten or is younger than the
// grace period.
func (g *gcRun) sweepBlobs(ctx context.Context, items []GCItem) (err error) {
	b, err := g.beginBatch(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if eerr := b.end(ctx); err == nil {
			err = eerr
		}
	}()
	var todo []GCItem
	for _, it := range items {
		if g.keepBlobs[it.Digest] {
			g.report.Skipped++
			continue
		}
		todo = append(todo, it)
	}
	ok := make([]bool, len(todo))
	if err := parallel(len(todo), func(i int) error {
		it := todo[i]
		untouched, err := g.untouched(ctx, it.Digest)
		if err != nil || !untouched {
			return err
		}
		fi, err := g.c.Stat(ctx, it.Path)
		if errors.Is(err, driver.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stat blob %s: %w", it.Digest, err)
		}
		ok[i] = fi.ModTime.Before(g.t0) && !g.young(fi.ModTime, g.opts.GracePeriod)
		return nil
	}); err != nil {
		return err
	}
	var gone []GCItem
	for i, it := range todo {
		if !ok[i] {
			g.report.Skipped++
			continue
		}
		gone = append(gone, it)
	}
	return b.delAll(ctx, gone)
}

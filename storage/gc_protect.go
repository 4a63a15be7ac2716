package storage

// The push side of online garbage collection: how a push never commits a manifest whose
// blobs a concurrent collector deletes.
//
//  1. Writing a layer link to a blob that is already stored (a mount, or an upload of
//     content the registry already has) is followed by a push marker (and a lookup of
//     the blob's data, so the answer does not claim a blob collected meanwhile),
//     _gc/touched/<alg>-<hex>. A collector's mark may have found no link to that blob;
//     the marker, written after the link, tells its sweep that the blob was linked since
//     the run began (a link written before the run began is seen by its mark). A HEAD
//     that finds a blob touches it too when Options.TouchOnHead is set, so a blob a
//     client found before pushing a manifest that references it is not swept meanwhile.
//  2. A manifest PUT (a) writes the manifest's bytes, revision link and referrer record,
//     (b) waits while _gc/sweeping is present (a sweep batch is deleting; it lasts at most
//     sweepBound), (c) checks that every blob it references is still linked and stored,
//     that every child manifest is still there, and that its own revision link is, and
//     only then (d) writes its tags. A collector's batch either wrote _gc/sweeping
//     after (b): then the batch re-lists the repository's revisions after (a), finds the
//     manifest, and keeps what it references, and it re-reads push markers after the
//     client's mounts; or it ended before (b): then (c) sees whatever it deleted, and the
//     PUT fails with 400 MANIFEST_BLOB_UNKNOWN (or MANIFEST_UNKNOWN for a child), nothing
//     tagged, the revision link rolled back. A revision link a batch removed between (a)
//     and (c) is written again and the steps repeat.
//
// The cost: a manifest PUT makes one more Stat (b) and one more round of Stats (c), in
// parallel; a mount or an upload of a stored blob one more small Put and one more Stat.
//
// Only where a collector may run. A bucket that was never garbage collected pays none of
// it: a Registry learns in the background whether its bucket is collected
// (gc_collected.go), and until it is, a manifest PUT goes from (a) straight to (d), and a
// stored blob's link gets no push marker. Why no push is left unprotected:
//
//   - "Collected" is anything under _gc/. The GC lease is written there by the first run's
//     Acquire and never deleted (Release writes an expired record), and a run writes
//     _gc/announcing before anything else of its own; so from the moment the first run
//     wrote one, _gc/ is never empty again. A Registry set up with Options.Collected (a
//     replica with storage.gc.enabled, `registryd gc`), or that ran a collection, is
//     collected from the start.
//   - A Registry lists _gc/ (one entry) in the background, every GCAnnounce/4 at most; a
//     request never waits for it. Finding something is sticky. Finding nothing is trusted
//     for GCAnnounce/2 from the moment that List was sent; a failed List changes nothing,
//     so a Registry that cannot reach the backend falls back to protecting its pushes
//     once its last answer is that old, and a Registry that just started protects them
//     until its first answer. So a push skips the protection at time t only if a List
//     sent after t − GCAnnounce/2 found _gc/ empty, that is, was answered before the
//     first run's write under _gc/ completed (at W): t < W + GCAnnounce/2.
//   - The decision is read after what it guards is written: the manifest PUT reads it
//     after (a), a link after the link. A push that skips the protection has therefore
//     written its revision link, referrer record and layer links before W + GCAnnounce/2.
//     Its tags (d) may come later, as in a protected PUT: the manifest is younger than
//     any grace period then, and kept untagged.
//   - A run that finds no _gc/announced (the first on the bucket, or a first that stopped
//     before it was done announcing) writes _gc/announcing, waits GCAnnounce (by its own
//     clock; the replicas measured GCAnnounce/2 by theirs, so only the clocks' rates,
//     not their offsets, matter, and the other half is slack), writes _gc/announced, and
//     only then begins (its start marker, retention, mark, sweep). It begins after
//     W + GCAnnounce: every push that skipped the protection wrote what it guards
//     before the run began, so its mark sees it (a revision link keeps its references, a
//     young layer link keeps its blob) exactly as if no push had raced it, and every push
//     that overlaps the run, in any replica, is a protected one (steps 1 and 2 above).
//     Mark cannot start during the wait: a link written after mark listed its repository
//     and carrying no push marker would not be seen by the sweep. A dry run deletes
//     nothing and does not wait.
//   - The protection stays tied to the bucket, not to a replica's configuration: a
//     replica without storage.gc.enabled next to one that collects protects its pushes
//     as soon as the collector announced itself. Options.TouchOnHead stays a setting of
//     its own (its marker protects a blob found by a HEAD before any link is written).
//
// A bucket whose _gc/ was emptied by hand is treated as never collected: the next run
// announces itself again. The check assumes a List that sees a completed write (S3, GCS,
// Azure and filesystems are strongly consistent for it).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	regerr "github.com/registryd/registryd/errors"
)

// errSweeping is returned by a manifest PUT that waited too long for a sweep batch.
var errSweeping = errors.New("a garbage collection sweep batch is still running")

// sweepWait bounds how long a manifest PUT waits for a sweep batch to end.
const sweepWait = sweepBound + clockSkew

// touch writes blob d's push marker. A failure is returned: the caller's push must not
// go on believing the blob protected.
func (r *Registry) touch(ctx context.Context, d digest.Digest) error {
	s := d.String()
	if err := r.d.Put(ctx, gcTouchedPath(d), strings.NewReader(s), int64(len(s))); err != nil {
		return fmt.Errorf("touch blob %s: %w", d, err)
	}
	return nil
}

// linkBlob writes repo's layer link to blob d. When the blob was stored before (stored:
// a mount, an upload of content the registry already had), its push marker follows the
// link, and the blob's data is looked up again: a collector may have deleted it between
// the caller's lookup and the marker, and then the caller's answer must not say the blob
// is there (the error is a plain one: the client retries, and uploads the bytes again).
// A blob whose data was just written needs no marker: it is younger than any grace
// period.
func (r *Registry) linkBlob(ctx context.Context, repo string, d digest.Digest, stored bool) error {
	if err := r.putLink(ctx, layerLinkPath(repo, d), d); err != nil {
		return fmt.Errorf("link blob: %w", err)
	}
	if !stored || !r.gcProtected() {
		return nil
	}
	if err := r.touch(ctx, d); err != nil {
		return err
	}
	if _, err := r.d.Stat(ctx, blobDataPath(d)); err != nil {
		return fmt.Errorf("blob %s was garbage collected while it was linked: %w", d, errGone(err))
	}
	return nil
}

// errCollected is returned when a stored blob being linked was collected meanwhile.
var errCollected = errors.New("blob collected while linking it")

// errGone turns a not-found into errCollected (never a 404: the client's request was
// right, the answer is to retry), other errors stay.
func errGone(err error) error {
	if errors.Is(err, driver.ErrNotFound) {
		return errCollected
	}
	return err
}

// waitSweep returns once no sweep batch is running: _gc/sweeping is absent, or older
// than sweepBound+clockSkew (left behind by a collector that stopped: the collector
// itself deletes nothing past sweepBound). It polls, up to sweepWait.
func (r *Registry) waitSweep(ctx context.Context) error {
	deadline := time.Now().Add(sweepWait)
	delay := 50 * time.Millisecond
	for {
		fi, err := r.d.Stat(ctx, gcSweepingPath())
		if errors.Is(err, driver.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stat gc sweep marker: %w", err)
		}
		if !fi.ModTime.IsZero() && time.Since(fi.ModTime) > sweepBound+clockSkew {
			return nil
		}
		if time.Now().After(deadline) {
			return errSweeping
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}

// commitManifest runs steps (a) to (c) of a manifest PUT (see the top of this file) for
// manifest m with digest dg and body: on success the manifest is stored and everything
// it references is there; the caller writes the tags.
func (r *Registry) commitManifest(ctx context.Context, repo string, m *manifestJSON, mt string, dg digest.Digest, body []byte) error {
	for attempt := 0; ; attempt++ {
		if err := r.storeManifest(ctx, repo, m, mt, dg, body); err != nil {
			return err
		}
		if !r.gcProtected() { // read after (a): see the top of this file
			return nil
		}
		if err := r.waitSweep(ctx); err != nil {
			return err
		}
		own := r.statInBackground(ctx, revisionLinkPath(repo, dg))
		err := r.checkReferences(ctx, repo, m, true)
		if _, lerr := own.Wait(); err == nil {
			if errors.Is(lerr, driver.ErrNotFound) && attempt < 2 {
				continue // a sweep batch removed it between (a) and (c)
			}
			if lerr != nil {
				err = fmt.Errorf("stat manifest link: %w", lerr)
			}
		}
		if err != nil {
			if regerr.Of(err, regerr.ManifestBlobUnknown) || regerr.Of(err, regerr.ManifestChildUnknown) {
				r.rollbackManifest(ctx, repo, m, dg)
			}
			return err
		}
		return nil
	}
}

// storeManifest writes a manifest's bytes, revision link and referrer record.
func (r *Registry) storeManifest(ctx context.Context, repo string, m *manifestJSON, mt string, dg digest.Digest, body []byte) error {
	if err := r.d.Put(ctx, blobDataPath(dg), bytes.NewReader(body), int64(len(body))); err != nil {
		return fmt.Errorf("store manifest: %w", err)
	}
	if err := r.putLink(ctx, revisionLinkPath(repo, dg), dg); err != nil {
		return fmt.Errorf("link manifest: %w", err)
	}
	if m.Subject != nil {
		if err := r.putReferrer(ctx, repo, m, mt, dg, int64(len(body))); err != nil {
			return err
		}
	}
	return nil
}

// rollbackManifest removes the referrer record and revision link of a manifest whose
// references a collector deleted while it was pushed (best effort: a later run sweeps
// what is left, as an untagged manifest).
func (r *Registry) rollbackManifest(ctx context.Context, repo string, m *manifestJSON, dg digest.Digest) {
	ctx = context.WithoutCancel(ctx)
	if m.Subject != nil {
		_ = r.d.Delete(ctx, referrerPath(repo, m.Subject.Digest, dg))
	}
	if err := r.d.Delete(ctx, revisionLinkPath(repo, dg)); err != nil && !errors.Is(err, driver.ErrNotFound) {
		r.opts.Logger.WarnContext(ctx, "manifest push: rolling back the revision link failed; garbage collection will sweep it",
			"repository", repo, "digest", dg, "error", err)
	}
}

// listTouches lists the push markers (during mark, so the plan counts the deletions of
// the expired ones).
func (g *gcRun) listTouches(ctx context.Context) error {
	l, err := g.listAll(ctx, gcTouchedDir())
	if err != nil {
		return err
	}
	for _, fi := range l {
		if _, ok := isTouchedName(fi.Path[strings.LastIndexByte(fi.Path, '/')+1:]); ok && !fi.IsDir &&
			fi.ModTime.Before(g.t0.Add(-g.clock.touchMargin)) {
			g.touches = append(g.touches, fi.Path)
		}
	}
	g.sweepCalls += int64(len(g.touches))
	return nil
}

// expireTouches removes the push markers written before the run began: they protect
// nothing any more (the run's mark saw the links they followed; later runs begin later).
func (g *gcRun) expireTouches(ctx context.Context) error {
	for _, p := range g.touches {
		if f := g.opts.Fence; f != nil {
			if err := f(); err != nil {
				return fmt.Errorf("gc fence: %w", err)
			}
		}
		if err := g.c.Delete(ctx, p); err != nil && !errors.Is(err, driver.ErrNotFound) {
			return err
		}
		g.report.TouchMarkers++
	}
	return nil
}

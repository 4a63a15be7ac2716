package storage

// Online garbage collection.
//
// A run has three phases: retention (retention.go) deletes the tags its rules select;
// mark (gc_mark.go) walks every repository and computes what is kept; sweep
// (gc_sweep.go) deletes the rest in short batches. Any replica may run it, one at a time:
// the caller holds the lease (GCLeasePath) and passes its fence, which is checked before
// every delete, so a runner that stalled past its lease deletes nothing more.
//
// What is kept. In each repository: every tagged manifest; with GCOptions.KeepUntagged
// every manifest, else every untagged manifest younger than the untagged grace period;
// the index children of a kept manifest; every manifest whose subject is kept (a
// referrer); every manifest of a schema the collector cannot read (nothing is swept in
// that repository then). Marks of manifests are per repository: a digest untagged in A
// and tagged in B is swept from A with A's revision link, tag index links, referrer record
// and the layer links only it needed, and kept in B. A layer link is kept when a kept
// manifest of its repository references the blob, or when it is younger than the grace
// period. Blob data is kept when a kept manifest anywhere is or references it, when a
// kept layer link anywhere names it, or when it is younger than the grace period.
//
// How it stays safe while replicas push (see gc_protect.go for the push side): every
// deletion is re-verified just before it happens (the revision link, layer link and blob
// were not rewritten since the run began and are still older than their grace period, the
// blob was not linked or found for a push since then), and happens inside a sweep batch:
// the object _gc/sweeping is present from before the batch's re-verification until after
// its last delete, and a batch that runs longer than sweepBound stops. A manifest PUT
// writes its revision link, waits while a batch is sweeping, and only then checks that
// everything it references is still stored, so either the batch saw its revision link
// (and keeps what it references) or the check runs after the batch and sees what the
// batch deleted (400 MANIFEST_BLOB_UNKNOWN, nothing committed).
//
// Failing closed: any error of a List, Stat or Reader during retention or mark (other
// than a positive not-found) ends the run before its first delete. Throttling
// (driver.ErrThrottled) slows the run down (backoff) instead of failing it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
)

// GCOptions configures a garbage collection run. The zero value of each field is a
// documented default.
type GCOptions struct {
	// GracePeriod: a blob, layer link or manifest younger than this is never deleted
	// (default 24h).
	GracePeriod time.Duration
	// KeepUntagged keeps untagged manifests (default false: they are swept once older
	// than UntaggedGracePeriod).
	KeepUntagged bool
	// UntaggedGracePeriod: an untagged manifest younger than this is kept, with what it
	// references (default GracePeriod), so index children pushed before their index and
	// referrers pushed before their subject survive.
	UntaggedGracePeriod time.Duration
	// DryRun computes the plan and deletes nothing; the plan is still written.
	DryRun bool
	// Retention selects tags to delete first (see RetentionRule).
	Retention []RetentionRule
	// Apply restricts the run to the items of a plan (from an earlier dry run): each is
	// deleted only if it still qualifies, and nothing outside the plan is.
	Apply *GCPlan
	// Fence is called before every delete; a non-nil error ends the run (the caller's
	// lease is lost). nil: no fence.
	Fence func() error
	// Logger receives one line per run and warnings (default: the Registry's logger).
	Logger *slog.Logger
}

// Kinds of objects a GC run deletes, as named in plans, reports and metrics.
const (
	GCKindTag      = "tag"      // a tag (its directory), deleted by retention
	GCKindManifest = "manifest" // a manifest's revision link in a repository
	GCKindTagIndex = "tagindex" // a tag's history entry for a swept manifest
	GCKindReferrer = "referrer" // the referrer record of a swept manifest
	GCKindLink     = "link"     // a repository's layer link
	GCKindBlob     = "blob"     // blob (or manifest) bytes
)

// GCItem is one object a run deletes (or, in a dry run, would delete).
type GCItem struct {
	Kind       string        `json:"kind"`
	Repository string        `json:"repository,omitempty"`
	Tag        string        `json:"tag,omitempty"`
	Digest     digest.Digest `json:"digest,omitempty"`
	// Path is the object (or, for a tag, the directory) deleted.
	Path string `json:"path"`
	// Size is the blob's size in bytes (blobs only).
	Size int64 `json:"size,omitempty"`
}

// GCPlan is what a run deletes: written to GCPlanPath by every run, dry or not.
type GCPlan struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	DryRun  bool      `json:"dryRun"`
	Items   []GCItem  `json:"items"`
	// Counts is the number of items of each kind.
	Counts map[string]int `json:"counts"`
	// Bytes is the total size of the blobs.
	Bytes int64 `json:"bytes"`
	// BackendCalls is the number of backend requests of the run: for a dry run, the
	// requests its mark made plus those the sweep of the plan would make (a real run over
	// an unchanged registry makes as many).
	BackendCalls int64 `json:"backendCalls"`
}

// GCReport describes a finished run.
type GCReport struct {
	DryRun       bool
	Started      time.Time
	Duration     time.Duration
	Repositories int
	// KeptManifests counts (repository, manifest) pairs kept; KeptBlobs distinct blobs.
	KeptManifests, KeptBlobs int
	// Deleted counts what was deleted (or would be, in a dry run) by kind.
	Deleted map[string]int
	// DeletedItems lists what was deleted (a dry run: nothing).
	DeletedItems []GCItem
	// DeletedBytes is the size of the blobs deleted.
	DeletedBytes int64
	// Skipped counts planned deletions that no longer qualified when re-verified.
	Skipped int
	// TouchMarkers counts the expired push markers removed.
	TouchMarkers int
	// BackendCalls counts the backend requests the run made.
	BackendCalls int64
	// Plan is the run's plan.
	Plan *GCPlan
}

// sweepBound bounds a sweep batch: the collector deletes nothing once this long has
// passed since it wrote _gc/sweeping, and a push treats a _gc/sweeping older than
// sweepBound+clockSkew as left behind by a collector that stopped.
const (
	sweepBound = 30 * time.Second
	clockSkew  = 30 * time.Second
	// sweepBatch is the largest number of deletions of one batch (made gcParallel at a
	// time).
	sweepBatch = 100
	// gcParallel bounds the concurrent backend calls of mark and sweep.
	gcParallel = 8
)

// errStaleBatch ends a run whose sweep batch outlived sweepBound.
var errStaleBatch = errors.New("gc: sweep batch ran past its time bound")

// gcRun is the state of one run.
type gcRun struct {
	// r is the Registry with the run's driver c.
	r    *Registry
	opts GCOptions
	c    *gcDriver
	log  *slog.Logger
	// t0 is the backend time at which the run began (truncated to whole seconds: some
	// backends report modification times in seconds). Objects written at or after t0
	// were written during the run.
	t0    time.Time
	clock gcClock

	refsMu sync.Mutex
	refs   map[digest.Digest]*refsEntry

	repos     []*repoMark
	keepBlobs map[digest.Digest]bool
	blobs     []GCItem // blob deletion candidates
	tags      []GCItem // retention's tag deletions
	// retained maps a repository to the tags retention deletes (dry run: mark treats
	// them as gone).
	retained map[string]map[string]bool
	touches  []string // push markers to expire
	allow    map[string]bool
	report   *GCReport
	reportMu sync.Mutex // guards report while a batch deletes in parallel
	// sweepCalls is the number of backend calls the sweep of the plan makes.
	sweepCalls int64
}

// refsEntry is the outcome of reading a manifest's references once per run.
type refsEntry struct {
	refs References
	// missing: the manifest's bytes are not stored (its references are unknown, and
	// nothing can be served for it).
	missing bool
	// unknown: the bytes are of a schema the collector cannot read.
	unknown bool
}

// CollectGarbage runs retention, mark and sweep once (see the top of gc.go) and writes
// the plan to GCPlanPath. The caller holds the GC lease and passes its fence in opts.
// An error of the mark phase means nothing was deleted; an error of the sweep phase (a
// backend failure, the fence) stops the run where it was: a later run finishes the job.
// The report is returned with what was done, also on error.
func (r *Registry) CollectGarbage(ctx context.Context, opts GCOptions) (*GCReport, error) {
	return r.collect(ctx, opts, gcClock{resolution: time.Second, touchMargin: time.Second})
}

// gcClock says how a run compares backend times.
type gcClock struct {
	// resolution is that of backend modification times (S3 reports whole seconds): the
	// run's start is truncated to it, so an object written in the same second counts as
	// written during the run.
	resolution time.Duration
	// touchMargin widens the window in which a push marker protects a blob.
	touchMargin time.Duration
}

func (r *Registry) collect(ctx context.Context, opts GCOptions, clock gcClock) (*GCReport, error) {
	if opts.GracePeriod <= 0 {
		opts.GracePeriod = 24 * time.Hour
	}
	if opts.UntaggedGracePeriod <= 0 {
		opts.UntaggedGracePeriod = opts.GracePeriod
	}
	if opts.Logger == nil {
		opts.Logger = r.opts.Logger
	}
	r.markCollected()
	c := &gcDriver{Driver: r.d}
	rr := *r
	rr.d = c
	g := &gcRun{r: &rr, opts: opts, c: c, log: opts.Logger, clock: clock,
		refs: map[digest.Digest]*refsEntry{}, keepBlobs: map[digest.Digest]bool{},
		report: &GCReport{DryRun: opts.DryRun, Started: time.Now(), Deleted: map[string]int{}}}
	if opts.Apply != nil {
		g.allow = map[string]bool{}
		for _, it := range opts.Apply.Items {
			g.allow[it.Path] = true
		}
	}
	err := g.run(ctx)
	g.report.Duration = time.Since(g.report.Started)
	g.report.BackendCalls = g.c.n.Load()
	attrs := []any{"dryrun", opts.DryRun, "repositories", g.report.Repositories,
		"kept_manifests", g.report.KeptManifests, "kept_blobs", g.report.KeptBlobs,
		"deleted", g.report.Deleted, "deleted_bytes", g.report.DeletedBytes, "skipped", g.report.Skipped,
		"backend_calls", g.report.BackendCalls, "took", g.report.Duration}
	if err != nil {
		g.log.WarnContext(ctx, "garbage collection failed", append(attrs, "error", err)...)
		return g.report, err
	}
	g.log.InfoContext(ctx, "garbage collection done", attrs...)
	return g.report, nil
}

func (g *gcRun) run(ctx context.Context) error {
	// A dry run deletes nothing: it only counts what announcing would cost.
	announceCalls := int64(0)
	if g.opts.DryRun {
		done, err := g.announced(ctx)
		if err != nil {
			return err
		}
		if !done {
			announceCalls = 2 // _gc/announcing and _gc/announced
		}
	} else if err := g.announce(ctx); err != nil {
		return err
	}
	if err := g.begin(ctx); err != nil {
		return err
	}
	if err := g.retention(ctx); err != nil {
		return fmt.Errorf("gc retention: %w", err)
	}
	if err := g.mark(ctx); err != nil {
		return fmt.Errorf("gc mark: %w", err)
	}
	plan := g.plan()
	if g.opts.DryRun {
		// + the run's start marker (a write and a Stat), the plan's own write, and
		// announcing the first run
		plan.BackendCalls = g.c.n.Load() + g.sweepCalls + 3 + announceCalls
		g.report.Plan = plan
		for _, it := range plan.Items {
			g.report.Deleted[it.Kind]++
		}
		g.report.DeletedBytes = plan.Bytes
		return g.writePlan(ctx, plan)
	}
	plan.BackendCalls = g.c.n.Load() + g.sweepCalls + 1
	g.report.Plan = plan
	if err := g.writePlan(ctx, plan); err != nil {
		return err
	}
	if err := g.sweep(ctx); err != nil {
		return fmt.Errorf("gc sweep: %w", err)
	}
	if err := g.expireTouches(ctx); err != nil {
		return fmt.Errorf("gc: expire push markers: %w", err)
	}
	return nil
}

// begin records the run's start in the backend and reads the backend's time from it
// (a dry run writes nothing and takes the local time).
func (g *gcRun) begin(ctx context.Context) error {
	if g.opts.DryRun {
		g.t0 = time.Now().Truncate(g.clock.resolution)
		return nil
	}
	b := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	if err := g.put(ctx, gcStartedPath(), b); err != nil {
		return fmt.Errorf("gc: record start: %w", err)
	}
	fi, err := g.c.Stat(ctx, gcStartedPath())
	if err != nil {
		return fmt.Errorf("gc: record start: %w", err)
	}
	g.t0 = fi.ModTime.Truncate(g.clock.resolution)
	if fi.ModTime.IsZero() {
		g.t0 = time.Now().Truncate(g.clock.resolution)
	}
	return nil
}

// plan returns the plan of what mark selected: retention's tags, then per repository its
// manifests (with their referrer records and tag index entries) and layer links, then
// blobs.
func (g *gcRun) plan() *GCPlan {
	p := &GCPlan{Version: 1, Created: time.Now().UTC(), DryRun: g.opts.DryRun, Counts: map[string]int{}}
	p.Items = append(p.Items, g.tags...)
	for _, rm := range g.repos {
		p.Items = append(p.Items, rm.items()...)
	}
	p.Items = append(p.Items, g.blobs...)
	for _, it := range p.Items {
		p.Counts[it.Kind]++
		p.Bytes += it.Size
	}
	if p.Items == nil {
		p.Items = []GCItem{}
	}
	return p
}

func (g *gcRun) writePlan(ctx context.Context, p *GCPlan) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := g.put(ctx, GCPlanPath(), b); err != nil {
		return fmt.Errorf("gc: write plan: %w", err)
	}
	return nil
}

// ReadGCPlan returns the plan the last GC run wrote (ErrNotFound-wrapping error if none).
func (r *Registry) ReadGCPlan(ctx context.Context) (*GCPlan, error) {
	rc, err := r.d.Reader(ctx, GCPlanPath(), 0, -1)
	if err != nil {
		return nil, fmt.Errorf("read gc plan: %w", err)
	}
	defer rc.Close()
	return DecodeGCPlan(rc)
}

// DecodeGCPlan parses a plan as written by a run.
func DecodeGCPlan(r io.Reader) (*GCPlan, error) {
	var p GCPlan
	dec := json.NewDecoder(io.LimitReader(r, 1<<30))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decode gc plan: %w", err)
	}
	if p.Version != 1 {
		return nil, fmt.Errorf("decode gc plan: unsupported version %d", p.Version)
	}
	return &p, nil
}

// allowed reports whether the run may delete the object at p (always, unless a plan is
// applied).
func (g *gcRun) allowed(p string) bool { return g.allow == nil || g.allow[p] }

// manifestRefs returns the references of manifest d, read once per run. A missing or
// unreadable-schema manifest is an entry saying so; any other failure is an error.
func (g *gcRun) manifestRefs(ctx context.Context, d digest.Digest) (*refsEntry, error) {
	g.refsMu.Lock()
	e, ok := g.refs[d]
	g.refsMu.Unlock()
	if ok {
		return e, nil
	}
	refs, err := g.r.manifestReferences(ctx, d)
	e = &refsEntry{refs: refs}
	switch {
	case err == nil:
	case errors.Is(err, driver.ErrNotFound):
		e.missing = true
	case errors.Is(err, errUnknownManifest), errors.Is(err, ErrBlobCorrupt):
		e.unknown = true
	default:
		return nil, err
	}
	g.refsMu.Lock()
	g.refs[d] = e
	g.refsMu.Unlock()
	return e, nil
}

// gcDriver is the driver of a run: it counts the backend calls and retries throttled
// ones with a growing backoff (the run slows down instead of failing).
type gcDriver struct {
	driver.Driver
	n atomic.Int64
}

// maxThrottleWaits bounds how often one call waits out throttling before the run fails.
const maxThrottleWaits = 8

// retry runs f (one backend call, counted) until it is not throttled, backing off from
// 500ms doubling to 30s with jitter.
func (c *gcDriver) retry(ctx context.Context, f func() error) error {
	delay := 500 * time.Millisecond
	for i := 0; ; i++ {
		c.n.Add(1)
		err := f()
		if !errors.Is(err, driver.ErrThrottled) || i >= maxThrottleWaits {
			return err
		}
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// Stat implements driver.Driver.
func (c *gcDriver) Stat(ctx context.Context, p string) (fi driver.Info, err error) {
	err = c.retry(ctx, func() error { fi, err = c.Driver.Stat(ctx, p); return err })
	return fi, err
}

// List implements driver.Driver.
func (c *gcDriver) List(ctx context.Context, dir, after string, limit int) (l []driver.Info, err error) {
	err = c.retry(ctx, func() error { l, err = c.Driver.List(ctx, dir, after, limit); return err })
	return l, err
}

// Reader implements driver.Driver.
func (c *gcDriver) Reader(ctx context.Context, p string, offset, length int64) (rc io.ReadCloser, err error) {
	err = c.retry(ctx, func() error { rc, err = c.Driver.Reader(ctx, p, offset, length); return err })
	return rc, err
}

// Put implements driver.Driver (the body must be a *bytes.Reader, to be resent).
func (c *gcDriver) Put(ctx context.Context, p string, r io.Reader, size int64) error {
	b, ok := r.(*bytes.Reader)
	if !ok {
		c.n.Add(1)
		return c.Driver.Put(ctx, p, r, size)
	}
	return c.retry(ctx, func() error {
		_, _ = b.Seek(0, io.SeekStart)
		return c.Driver.Put(ctx, p, b, size)
	})
}

// Delete implements driver.Driver.
func (c *gcDriver) Delete(ctx context.Context, p string) error {
	return c.retry(ctx, func() error { return c.Driver.Delete(ctx, p) })
}

func (g *gcRun) put(ctx context.Context, p string, b []byte) error {
	return g.c.Put(ctx, p, bytes.NewReader(b), int64(len(b)))
}

// listAll lists every entry directly under dir, page by page, through the run's counting
// driver.
func (g *gcRun) listAll(ctx context.Context, dir string) ([]driver.Info, error) {
	return listAll(ctx, g.c, dir)
}

// listDigests returns the digests of a <dir>/<alg>/<hex>/... tree (layer links,
// revisions, tag index), sorted. Directory names that are no digest are skipped.
func (g *gcRun) listDigests(ctx context.Context, dir string) ([]digest.Digest, error) {
	algs, err := g.listAll(ctx, dir)
	if err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, a := range algs {
		if !a.IsDir {
			continue
		}
		hexes, err := g.listAll(ctx, a.Path)
		if err != nil {
			return nil, err
		}
		for _, h := range hexes {
			if !h.IsDir {
				continue
			}
			d := digest.NewDigestFromEncoded(digest.Algorithm(path.Base(a.Path)), path.Base(h.Path))
			if d.Validate() == nil {
				out = append(out, d)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// parallel runs f(i) for i in [0, n) with at most gcParallel at once and returns the
// first error.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, gcParallel)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return firstNonNil(errs)
}

// gcSet is a set of digests.
type gcSet map[digest.Digest]bool

// isTouchedName parses the base name of a push marker.
func isTouchedName(name string) (digest.Digest, bool) {
	alg, hex, ok := strings.Cut(name, "-")
	if !ok {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	return d, d.Validate() == nil
}

package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/registryd/registryd/driver"
)

// Migration copies repositories from one backend to another with registry semantics: the
// blobs, manifests (revision links), layer links, referrer records and tags (current and
// index links) of the layout in paths.go, so it reads a bucket written by registryd or by
// CNCF Distribution alike.
//
// Guarantees:
//   - Blob bytes stream from the source driver's Reader into the destination driver's
//     Writer (small blobs, up to [MigrateSmallBlob], through one buffered Put): memory stays
//     bounded, nothing touches local disk. Every blob is hashed while it streams; a blob
//     whose bytes do not match its digest (or its size) is never committed: the writer is
//     Aborted and the blob reported failed.
//   - Each blob is copied once, however many repositories link it.
//   - Idempotent and resumable: a blob already at the destination with the source's size
//     (same content address, same length) is skipped, as is a link or record whose bytes
//     are already equal; a run after an interrupted one copies only what is missing, and a
//     tag that moved in the source is rewritten.
//   - Order: blobs, then layer links, then manifests (revision links), then referrer
//     records, then tags: a tag's index link and, last, its current link. Each step starts
//     only when the previous one finished for every repository, and nothing is written
//     for an object that depends on something that failed (a manifest referencing a failed
//     blob or failed child manifest, a tag pointing at such a manifest). A reader of the
//     destination never sees a tag whose manifest or blobs are missing, whether the run
//     finishes, fails or is cancelled.
//   - The source may take pushes meanwhile: each repository's revisions are listed before
//     its layer links (a push links blobs before its manifest) and its tags after both; a
//     tag or index that references content pushed during the walk is left for the next
//     run (MigrateStats.Deferred), never written dangling.
//   - Deletions are not propagated: what the source no longer holds stays at the
//     destination (Migrate only adds and updates).
//
// Failures of single objects (a corrupt blob, an object the backend refuses for good)
// are recorded in the report and the run goes on; transient backend errors are retried
// by the drivers' retry wrapper (driver.WithRetry), which the caller wraps around both
// drivers, and a blob whose stream breaks mid-copy is tried again from the start.
//
// A Migration is used once: call Run, and Progress from any goroutine while it runs.
type Migration struct {
	src, dst driver.Driver
	opts     MigrateOptions
	stats    migrateCounters
	phase    atomic.Int32

	mu       sync.Mutex
	failures []MigrateFailure
}

// MigrateSmallBlob is the size up to which a blob is read whole into memory, verified and
// stored with one Put (one request on every backend); larger blobs stream through the
// destination driver's Writer (multipart on the cloud backends).
const MigrateSmallBlob = 4 << 20

// blobCopyAttempts bounds the copies of one blob whose stream fails with a transient
// error after the driver's own retries (a stream broken mid-body is not retried below).
const blobCopyAttempts = 3

// MigrateOptions configures a Migration. The zero value copies every repository with
// concurrency 8.
type MigrateOptions struct {
	// Repositories selects the repositories to copy by name: a path.Match pattern
	// ("team/*", where * does not cross "/"), or a prefix followed by "/**" for a
	// whole subtree ("team/**"); "" or "**" selects every repository.
	Repositories string
	// Concurrency bounds the blobs copied at once (default 8); the small objects
	// (links, records, Stats), whose requests are latency-bound, go four times as many
	// at once.
	Concurrency int
	// DryRun reads both backends and counts what would be copied, writing nothing.
	DryRun bool
	// Logger receives a line per failed object (default: discard).
	Logger *slog.Logger
}

// MigratePhase names the step a Migration is in.
type MigratePhase int32

// The steps of a Migration, in order.
const (
	PhasePlanning  MigratePhase = iota // walking the source, comparing with the destination
	PhaseBlobs                         // copying blob bytes
	PhaseLayers                        // writing layer links
	PhaseManifests                     // writing manifest revision links
	PhaseReferrers                     // writing referrer records
	PhaseTags                          // writing tag index and current links
	PhaseDone                          // finished (or stopped)
)

// String returns the phase's lower-case name.
func (p MigratePhase) String() string {
	switch p {
	case PhasePlanning:
		return "planning"
	case PhaseBlobs:
		return "blobs"
	case PhaseLayers:
		return "layer links"
	case PhaseManifests:
		return "manifests"
	case PhaseReferrers:
		return "referrers"
	case PhaseTags:
		return "tags"
	case PhaseDone:
		return "done"
	}
	return fmt.Sprintf("phase(%d)", int32(p))
}

// MigrateStats counts a Migration's work. "Copied" and "written" counts are what this run
// wrote (in a dry run: what it would write); "skipped" counts what the destination
// already held with equal content.
type MigrateStats struct {
	Phase        MigratePhase `json:"-"`
	Repositories int64        `json:"repositories"`

	// Blobs is the number of blobs to copy (known at the end of planning); Bytes their
	// total size.
	Blobs        int64 `json:"blobs"`
	Bytes        int64 `json:"bytes"`
	BlobsCopied  int64 `json:"blobsCopied"`
	BytesCopied  int64 `json:"bytesCopied"`
	BlobsSkipped int64 `json:"blobsSkipped"`
	BytesSkipped int64 `json:"bytesSkipped"`
	BlobsFailed  int64 `json:"blobsFailed"`
	// BytesStreamed counts blob bytes read from the source so far, including those of
	// blobs still in flight, failed or retried: the figure behind a progress rate.
	BytesStreamed int64 `json:"bytesStreamed"`

	Manifests        int64 `json:"manifests"`
	ManifestsSkipped int64 `json:"manifestsSkipped"`
	Tags             int64 `json:"tags"`
	TagsSkipped      int64 `json:"tagsSkipped"`
	// Links counts layer links and tag index links.
	Links            int64 `json:"links"`
	LinksSkipped     int64 `json:"linksSkipped"`
	Referrers        int64 `json:"referrers"`
	ReferrersSkipped int64 `json:"referrersSkipped"`

	// Deferred counts manifests and tags left for the next run: they reference content
	// pushed to the source while this run walked it.
	Deferred int64 `json:"deferred"`

	// Failed counts failed objects (blobs, links, records, and manifests and tags not
	// written because something they depend on failed).
	Failed int64 `json:"failed"`
}

// MigrateFailure is one object a Migration could not copy.
type MigrateFailure struct {
	// Object names it: "blob sha256:…", "manifest repo@sha256:…", "tag repo:tag", ...
	Object string `json:"object"`
	// Reason is Err's message.
	Reason string `json:"reason"`
	// Err is the cause (a driver error, ErrMigrateDigestMismatch, ErrMigrateDependency).
	Err error `json:"-"`
}

// MigrateReport is the outcome of Run.
type MigrateReport struct {
	MigrateStats
	DryRun   bool             `json:"dryRun"`
	Failures []MigrateFailure `json:"failures"`
}

// Errors recorded in MigrateFailure.Err.
var (
	// ErrMigrateDigestMismatch: the source's bytes of a blob do not hash to its digest or
	// do not have the size the source reported; nothing was written.
	ErrMigrateDigestMismatch = errors.New("source blob does not match its digest")
	// ErrMigrateDependency: the object was not written because something it references
	// failed.
	ErrMigrateDependency = errors.New("not written: depends on an object that failed")
)

type migrateCounters struct {
	repositories, blobs, bytes, blobsCopied, bytesCopied, blobsSkipped, bytesSkipped,
	blobsFailed, bytesStreamed, manifests, manifestsSkipped, tags, tagsSkipped, links,
	linksSkipped, referrers, referrersSkipped, deferred, failed atomic.Int64
}

// NewMigration returns a Migration from src to dst. Both should be wrapped in
// driver.WithRetry by the caller.
func NewMigration(src, dst driver.Driver, opts MigrateOptions) (*Migration, error) {
	if src == nil || dst == nil {
		return nil, errors.New("storage: migration needs a source and a destination driver")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := checkRepositoryPattern(opts.Repositories); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return &Migration{src: src, dst: dst, opts: opts}, nil
}

// Progress returns the counts so far; it is safe to call while Run runs.
func (m *Migration) Progress() MigrateStats {
	c := &m.stats
	return MigrateStats{
		Phase:            MigratePhase(m.phase.Load()),
		Repositories:     c.repositories.Load(),
		Blobs:            c.blobs.Load(),
		Bytes:            c.bytes.Load(),
		BlobsCopied:      c.blobsCopied.Load(),
		BytesCopied:      c.bytesCopied.Load(),
		BlobsSkipped:     c.blobsSkipped.Load(),
		BytesSkipped:     c.bytesSkipped.Load(),
		BlobsFailed:      c.blobsFailed.Load(),
		BytesStreamed:    c.bytesStreamed.Load(),
		Manifests:        c.manifests.Load(),
		ManifestsSkipped: c.manifestsSkipped.Load(),
		Tags:             c.tags.Load(),
		TagsSkipped:      c.tagsSkipped.Load(),
		Links:            c.links.Load(),
		LinksSkipped:     c.linksSkipped.Load(),
		Referrers:        c.referrers.Load(),
		ReferrersSkipped: c.referrersSkipped.Load(),
		Deferred:         c.deferred.Load(),
		Failed:           c.failed.Load(),
	}
}

// migrateRepo is what the source holds for one repository.
type migrateRepo struct {
	name      string
	layers    []digest.Digest
	manifests []digest.Digest
	// refs lists, per manifest, the blobs and child manifests it references (config,
	// layers, index entries); a manifest absent from refs could not be read.
	refs map[digest.Digest][]digest.Digest
	// pending holds the indexes whose children were pushed during the walk.
	pending   map[digest.Digest]bool
	tags      []migrateTag
	referrers []migrateReferrer
}

type migrateTag struct {
	name    string
	current []byte // the current link's bytes
	target  digest.Digest
	index   []digest.Digest
}

type migrateReferrer struct {
	path     string
	manifest digest.Digest
}

// migrateBlob is one blob to copy (or skip).
type migrateBlob struct {
	d    digest.Digest
	size int64
	copy bool // missing (or of another size) at the destination
}

func (m *Migration) fail(object string, err error) {
	m.stats.failed.Add(1)
	m.mu.Lock()
	m.failures = append(m.failures, MigrateFailure{Object: object, Reason: err.Error(), Err: err})
	m.mu.Unlock()
	m.opts.Logger.Warn("migrate: object failed", "object", object, "error", err)
}

// Run performs the migration and returns its report. Per-object failures are in the
// report (Failed > 0); the error is non-nil only when the run could not go on: the source
// could not be listed, or ctx was cancelled (then the error wraps ctx.Err(), in-flight
// writers were Aborted, and the report counts what was done).
func (m *Migration) Run(ctx context.Context) (MigrateReport, error) {
	defer m.phase.Store(int32(PhaseDone))
	err := m.run(ctx)
	if err == nil {
		err = ctx.Err()
	}
	m.mu.Lock()
	rep := MigrateReport{MigrateStats: m.Progress(), DryRun: m.opts.DryRun, Failures: append([]MigrateFailure(nil), m.failures...)}
	m.mu.Unlock()
	rep.Phase = PhaseDone
	return rep, err
}

func (m *Migration) run(ctx context.Context) error {
	m.phase.Store(int32(PhasePlanning))
	src := &Registry{d: m.src}
	var repos []*migrateRepo
	for name, err := range src.Repositories(ctx, "") {
		if err != nil {
			return fmt.Errorf("migrate: list source repositories: %w", err)
		}
		if !matchRepository(m.opts.Repositories, name) {
			continue
		}
		r, err := m.walkRepo(ctx, name)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if err != nil {
			m.fail("repository "+name, err)
			continue
		}
		m.stats.repositories.Add(1)
		repos = append(repos, r)
	}

	blobs := m.planBlobs(ctx, repos)
	if err := ctx.Err(); err != nil {
		return err
	}
	failed := &digestSet{m: map[digest.Digest]bool{}}
	for _, b := range blobs {
		if b.size < 0 {
			failed.add(b.d)
		}
	}

	m.phase.Store(int32(PhaseBlobs))
	if !m.opts.DryRun {
		m.copyBlobs(ctx, blobs, failed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// Layer links: a repository's link to a blob that failed is not written, and a
	// failed link makes the blob unusable in that repository.
	m.phase.Store(int32(PhaseLayers))
	unusable := make([]*digestSet, len(repos))
	for i, r := range repos {
		unusable[i] = &digestSet{m: map[digest.Digest]bool{}}
		have, err := m.dstDigests(ctx, repoDir(r.name)+"/_layers")
		if err != nil {
			have = nil // read each link instead
		}
		m.eachSmall(ctx, len(r.layers), func(j int) {
			d := r.layers[j]
			if failed.has(d) {
				unusable[i].add(d)
				m.fail(fmt.Sprintf("layer link %s@%s", r.name, d), ErrMigrateDependency)
				return
			}
			wrote, err := m.syncObject(ctx, layerLinkPath(r.name, d), []byte(d.String()), have != nil && !have[d])
			m.count(err, wrote, &m.stats.links, &m.stats.linksSkipped)
			if err != nil {
				unusable[i].add(d)
				m.fail(fmt.Sprintf("layer link %s@%s", r.name, d), err)
			}
		})
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// Manifests: blocked when their bytes, a referenced blob or a child manifest failed.
	m.phase.Store(int32(PhaseManifests))
	blocked := make([]*digestSet, len(repos))
	deferred := make([]*digestSet, len(repos))
	for i, r := range repos {
		blocked[i], deferred[i] = m.blockedManifests(r, failed, unusable[i])
		have, err := m.dstDigests(ctx, repoDir(r.name)+"/_manifests/revisions")
		if err != nil {
			have = nil // read each link instead
		}
		m.eachSmall(ctx, len(r.manifests), func(j int) {
			d := r.manifests[j]
			if blocked[i].has(d) {
				return
			}
			wrote, err := m.syncObject(ctx, revisionLinkPath(r.name, d), []byte(d.String()), have != nil && !have[d])
			m.count(err, wrote, &m.stats.manifests, &m.stats.manifestsSkipped)
			if err != nil {
				blocked[i].add(d)
				m.fail(fmt.Sprintf("manifest %s@%s", r.name, d), err)
			}
		})
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	m.phase.Store(int32(PhaseReferrers))
	for i, r := range repos {
		m.eachSmall(ctx, len(r.referrers), func(j int) {
			ref := r.referrers[j]
			if blocked[i].has(ref.manifest) {
				m.fail("referrer record "+ref.path, ErrMigrateDependency)
				return
			}
			b, err := readSmall(ctx, m.src, ref.path, 1<<20)
			if errors.Is(err, driver.ErrNotFound) {
				return // removed from the source since the walk
			}
			var wrote bool
			if err == nil {
				wrote, err = m.syncObject(ctx, ref.path, b, false)
			}
			m.count(err, wrote, &m.stats.referrers, &m.stats.referrersSkipped)
			if err != nil {
				m.fail("referrer record "+ref.path, err)
			}
		})
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	m.phase.Store(int32(PhaseTags))
	for i, r := range repos {
		revisions := make(map[digest.Digest]bool, len(r.manifests))
		for _, d := range r.manifests {
			revisions[d] = true
		}
		var have map[string]bool
		if names, err := (&Registry{d: m.dst}).allTags(ctx, r.name); err == nil {
			have = make(map[string]bool, len(names))
			for _, n := range names {
				have[n] = true
			}
		}
		m.eachSmall(ctx, len(r.tags), func(j int) {
			m.syncTag(ctx, r, r.tags[j], revisions, blocked[i], deferred[i], have != nil && !have[r.tags[j].name])
		})
	}
	return ctx.Err()
}

// count adds one to written or skipped unless err is set.
func (m *Migration) count(err error, wrote bool, written, skipped *atomic.Int64) {
	switch {
	case err != nil:
	case wrote:
		written.Add(1)
	default:
		skipped.Add(1)
	}
}

// syncTag writes a tag's index links and then its current link, unless the manifest it
// points at is not at the destination.
// absent says the destination has no such tag (from a listing).
//
// A tag that moved, during the walk, to a manifest pushed meanwhile (not in the revision
// listing, but in the source now), or that points at a deferred manifest, is left as
// it is at the destination for the next run: counted in Deferred, not a failure.
func (m *Migration) syncTag(ctx context.Context, r *migrateRepo, t migrateTag, revisions map[digest.Digest]bool, blocked, deferred *digestSet, absent bool) {
	object := "tag " + r.name + ":" + t.name
	if !revisions[t.target] {
		_, err := m.src.Stat(ctx, revisionLinkPath(r.name, t.target))
		switch {
		case err == nil:
			m.stats.deferred.Add(1)
		case errors.Is(err, driver.ErrNotFound):
			m.fail(object, fmt.Errorf("%w: manifest %s is not in the source repository", ErrMigrateDependency, t.target))
		default:
			m.fail(object, fmt.Errorf("source: %w", err))
		}
		return
	}
	if deferred.has(t.target) {
		m.stats.deferred.Add(1)
		return
	}
	if blocked.has(t.target) {
		m.fail(object, fmt.Errorf("%w: manifest %s", ErrMigrateDependency, t.target))
		return
	}
	for _, d := range t.index {
		if blocked.has(d) {
			continue // history of a manifest that is not there; the tag does not need it
		}
		wrote, err := m.syncObject(ctx, tagIndexLinkPath(r.name, t.name, d), []byte(d.String()), absent)
		m.count(err, wrote, &m.stats.links, &m.stats.linksSkipped)
		if err != nil {
			m.fail(object, err)
			return
		}
	}
	if err := ctx.Err(); err != nil {
		return
	}
	wrote, err := m.syncObject(ctx, tagCurrentPath(r.name, t.name), t.current, absent)
	m.count(err, wrote, &m.stats.tags, &m.stats.tagsSkipped)
	if err != nil {
		m.fail(object, err)
	}
}

// blockedManifests returns the manifests of r that must not be written: their bytes could
// not be read or copied, they reference a failed or unusable blob, or (indexes) a blocked
// child manifest of the repository.
//
// Manifests waiting for content pushed during the run (r.pending, and the indexes above
// them) are blocked too, and returned in deferred: not failures, the next run copies them.
func (m *Migration) blockedManifests(r *migrateRepo, failed, unusable *digestSet) (blocked, deferred *digestSet) {
	blocked = &digestSet{m: map[digest.Digest]bool{}}
	deferred = &digestSet{m: map[digest.Digest]bool{}}
	reason := map[digest.Digest]string{}
	isManifest := make(map[digest.Digest]bool, len(r.manifests))
	for _, d := range r.manifests {
		isManifest[d] = true
	}
	for _, d := range r.manifests {
		refs, ok := r.refs[d]
		switch {
		case !ok:
			blocked.add(d) // unreadable: reported by walkRepo
		case failed.has(d):
			blocked.add(d)
			reason[d] = "its bytes failed to copy"
		case r.pending[d]:
			blocked.add(d)
			deferred.add(d)
		default:
			for _, ref := range refs {
				if failed.has(ref) || unusable.has(ref) {
					blocked.add(d)
					reason[d] = "blob " + ref.String()
					break
				}
			}
		}
	}
	for changed := true; changed; {
		changed = false
		for _, d := range r.manifests {
			if blocked.has(d) {
				continue
			}
			for _, ref := range r.refs[d] {
				if isManifest[ref] && blocked.has(ref) {
					blocked.add(d)
					if deferred.has(ref) {
						deferred.add(d)
					} else {
						reason[d] = "manifest " + ref.String()
					}
					changed = true
					break
				}
			}
		}
	}
	for _, d := range r.manifests {
		if reason[d] != "" {
			m.fail(fmt.Sprintf("manifest %s@%s", r.name, d), fmt.Errorf("%w: %s", ErrMigrateDependency, reason[d]))
		}
		if deferred.has(d) {
			m.stats.deferred.Add(1)
		}
	}
	return blocked, deferred
}

// walkRepo reads what the source holds for repository name.
func (m *Migration) walkRepo(ctx context.Context, name string) (*migrateRepo, error) {
	r := &migrateRepo{name: name, refs: map[digest.Digest][]digest.Digest{}, pending: map[digest.Digest]bool{}}
	var err error
	// Revisions before layers: a push links its blobs before its manifest, so every
	// blob of a listed manifest is in the later layer listing even while the source is
	// being pushed to.
	if r.manifests, err = digestDirs(ctx, m.src, repoDir(name)+"/_manifests/revisions"); err != nil {
		return nil, err
	}
	if r.layers, err = digestDirs(ctx, m.src, repoDir(name)+"/_layers"); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	m.eachSmall(ctx, len(r.manifests), func(i int) {
		d := r.manifests[i]
		refs, children, err := m.manifestRefs(ctx, d)
		if err != nil {
			m.fail(fmt.Sprintf("manifest %s@%s", name, d), err)
			return
		}
		// An index child missing from the revision listing but in the source now was
		// pushed during the walk: the index waits for the next run.
		pending := false
		for _, c := range children {
			if slices.Contains(r.manifests, c) {
				continue
			}
			if _, err := m.src.Stat(ctx, revisionLinkPath(name, c)); err == nil {
				pending = true
			}
		}
		mu.Lock()
		r.refs[d] = refs
		if pending {
			r.pending[d] = true
		}
		mu.Unlock()
	})

	// A tag's index links name manifests of the repository: only the algorithms of its
	// revisions are listed (one listing per tag saved; history links of another
	// algorithm would name manifests the repository no longer holds).
	var algs []digest.Algorithm
	for _, d := range r.manifests {
		if !slices.Contains(algs, d.Algorithm()) {
			algs = append(algs, d.Algorithm())
		}
	}
	src := &Registry{d: m.src}
	tags, err := src.allTags(ctx, name)
	if err != nil {
		return nil, err
	}
	r.tags = make([]migrateTag, len(tags))
	ok := make([]bool, len(tags))
	m.eachSmall(ctx, len(tags), func(i int) {
		t := migrateTag{name: tags[i]}
		b, err := readSmall(ctx, m.src, tagCurrentPath(name, t.name), 1024)
		if errors.Is(err, driver.ErrNotFound) {
			return // a tag being deleted, or index history only
		}
		if err == nil {
			t.current = b
			t.target, err = digest.Parse(strings.TrimSpace(string(b)))
		}
		for _, alg := range algs {
			if err != nil {
				break
			}
			var l []digest.Digest
			l, err = hexDirs(ctx, m.src, tagDir(name, t.name)+"/index/"+alg.String(), alg)
			t.index = append(t.index, l...)
		}
		if err != nil {
			m.fail("tag "+name+":"+t.name, err)
			return
		}
		r.tags[i], ok[i] = t, true
	})
	kept := r.tags[:0]
	for i, t := range r.tags {
		if ok[i] {
			kept = append(kept, t)
		}
	}
	r.tags = kept

	refDir := repoDir(name) + "/_referrers"
	subjects, err := digestDirs(ctx, m.src, refDir)
	if err != nil {
		return nil, err
	}
	for _, s := range subjects {
		dir := referrersDir(name, s)
		entries, err := listAll(ctx, m.src, dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir {
				continue
			}
			d, ok := referrerRecord(e)
			if !ok {
				continue
			}
			r.referrers = append(r.referrers, migrateReferrer{path: referrerPath(name, s, d), manifest: d})
		}
	}
	return r, ctx.Err()
}

// manifestRefs reads manifest d's bytes from the source and returns the digests it
// references (see parseReferences: config, layers and index entries) and, of those, the
// index entries. Bytes of no schema registryd knows are copied as they are, with no
// references.
func (m *Migration) manifestRefs(ctx context.Context, d digest.Digest) (refs, children []digest.Digest, err error) {
	r, err := (&Registry{d: m.src}).manifestReferences(ctx, d)
	if errors.Is(err, errUnknownManifest) {
		return []digest.Digest{}, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	refs = make([]digest.Digest, 0, len(r.Blobs)+len(r.Manifests))
	return append(append(refs, r.Blobs...), r.Manifests...), r.Manifests, nil
}

// planBlobs collects every blob the repositories link (layers and manifests), once each,
// and compares source and destination: a blob present at the destination with the
// source's size is skipped. A blob whose Stat fails is recorded failed (size -1).
func (m *Migration) planBlobs(ctx context.Context, repos []*migrateRepo) []*migrateBlob {
	seen := map[digest.Digest]bool{}
	var blobs []*migrateBlob
	for _, r := range repos {
		for _, list := range [][]digest.Digest{r.layers, r.manifests} {
			for _, d := range list {
				if !seen[d] {
					seen[d] = true
					blobs = append(blobs, &migrateBlob{d: d})
				}
			}
		}
	}
	m.eachSmall(ctx, len(blobs), func(i int) {
		b := blobs[i]
		p := blobDataPath(b.d)
		fi, err := m.src.Stat(ctx, p)
		if err != nil {
			b.size = -1
			m.stats.blobsFailed.Add(1)
			m.fail("blob "+b.d.String(), fmt.Errorf("source: %w", err))
			return
		}
		b.size = fi.Size
		have, err := m.dst.Stat(ctx, p)
		switch {
		case err == nil && have.Size == fi.Size:
			m.stats.blobsSkipped.Add(1)
			m.stats.bytesSkipped.Add(fi.Size)
			return
		case err != nil && !errors.Is(err, driver.ErrNotFound):
			b.size = -1
			m.stats.blobsFailed.Add(1)
			m.fail("blob "+b.d.String(), fmt.Errorf("destination: %w", err))
			return
		}
		b.copy = true
		m.stats.blobs.Add(1)
		m.stats.bytes.Add(fi.Size)
		if m.opts.DryRun {
			m.stats.blobsCopied.Add(1)
			m.stats.bytesCopied.Add(fi.Size)
		}
	})
	return blobs
}

// copyBlobs copies the planned blobs, Concurrency at a time; a blob that fails is added
// to failed.
func (m *Migration) copyBlobs(ctx context.Context, blobs []*migrateBlob, failed *digestSet) {
	var todo []*migrateBlob
	for _, b := range blobs {
		if b.copy {
			todo = append(todo, b)
		}
	}
	m.each(ctx, len(todo), func(i int) {
		b := todo[i]
		var err error
		for attempt := 1; attempt <= blobCopyAttempts; attempt++ {
			if err = m.copyBlob(ctx, b.d, b.size); err == nil || !driver.Retryable(err) || ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			failed.add(b.d)
			if ctx.Err() != nil {
				return // cancelled: not a failure of the blob
			}
			m.stats.blobsFailed.Add(1)
			m.fail("blob "+b.d.String(), err)
			return
		}
		m.stats.blobsCopied.Add(1)
		m.stats.bytesCopied.Add(b.size)
	})
}

// copyBlob streams blob d (size bytes) from the source to the destination, verifying its
// digest; on any failure nothing is committed at the destination.
func (m *Migration) copyBlob(ctx context.Context, d digest.Digest, size int64) error {
	p := blobDataPath(d)
	rc, err := m.src.Reader(ctx, p, 0, -1)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer rc.Close()
	v := d.Verifier()
	in := &countingReader{r: io.TeeReader(rc, v), n: &m.stats.bytesStreamed}
	mismatch := func(n int64) error {
		if n != size {
			return fmt.Errorf("%w: %d bytes read, the source reported %d", ErrMigrateDigestMismatch, n, size)
		}
		return fmt.Errorf("%w: the bytes hash to another digest", ErrMigrateDigestMismatch)
	}
	if size <= MigrateSmallBlob {
		// Exactly size bytes, then one more read that must find the end.
		buf := make([]byte, size)
		n, err := io.ReadFull(in, buf)
		if err == nil {
			var extra [1]byte
			var k int
			k, err = io.ReadFull(in, extra[:])
			n += k
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF) || (err == nil && int64(n) != size):
			return mismatch(int64(n))
		case err != nil:
			return fmt.Errorf("source: %w", err)
		case !v.Verified():
			return mismatch(int64(n))
		}
		if err := m.dst.Put(ctx, p, bytes.NewReader(buf), size); err != nil {
			return fmt.Errorf("destination: %w", err)
		}
		return nil
	}
	w, err := m.dst.Writer(ctx, p, nil)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	abort := func(cause error) error {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if aerr := w.Abort(actx); aerr != nil {
			m.opts.Logger.Warn("migrate: aborting a destination writer failed", "digest", d, "error", aerr)
		}
		return cause
	}
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(onlyWriter{w}, io.LimitReader(in, size+1), buf)
	if err != nil {
		return abort(fmt.Errorf("copy: %w", err))
	}
	if n != size || !v.Verified() {
		return abort(mismatch(n))
	}
	if err := ctx.Err(); err != nil {
		return abort(err)
	}
	if err := w.Commit(ctx); err != nil {
		return abort(fmt.Errorf("destination commit: %w", err))
	}
	return nil
}

// onlyWriter hides any ReaderFrom of the writer so io.CopyBuffer uses its bounded buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// countingReader adds the bytes read to n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// syncObject makes the destination object at p hold want: it is left alone when it
// already does (wrote false), otherwise written with one Put (in a dry run, only
// reported as to be written). absent says a listing of the destination has just shown
// that p does not exist, which saves reading it.
func (m *Migration) syncObject(ctx context.Context, p string, want []byte, absent bool) (bool, error) {
	if !absent {
		have, err := readSmall(ctx, m.dst, p, int64(len(want))+1)
		switch {
		case err == nil && bytes.Equal(have, want):
			return false, nil
		case err != nil && !errors.Is(err, driver.ErrNotFound):
			return false, fmt.Errorf("destination: %w", err)
		}
	}
	if m.opts.DryRun {
		return true, nil
	}
	if err := m.dst.Put(ctx, p, bytes.NewReader(want), int64(len(want))); err != nil {
		return false, fmt.Errorf("destination: %w", err)
	}
	return true, nil
}

// dstDigests returns the digests of a <dir>/<alg>/<hex>/ tree at the destination (one
// listing instead of a read per link).
func (m *Migration) dstDigests(ctx context.Context, dir string) (map[digest.Digest]bool, error) {
	l, err := digestDirs(ctx, m.dst, dir)
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	set := make(map[digest.Digest]bool, len(l))
	for _, d := range l {
		set[d] = true
	}
	return set, nil
}

// smallPerBlob is how many small-object requests (links, records, Stats) run at once
// per blob copy allowed at once: they are latency-bound, not bandwidth-bound.
const smallPerBlob = 4

// each runs f(0..n-1), Concurrency at a time, and returns when all have returned; once
// ctx is done no further call starts.
func (m *Migration) each(ctx context.Context, n int, f func(i int)) {
	m.parallel(ctx, n, m.opts.Concurrency, f)
}

// eachSmall is each for small-object requests: smallPerBlob·Concurrency at a time.
func (m *Migration) eachSmall(ctx context.Context, n int, f func(i int)) {
	m.parallel(ctx, n, smallPerBlob*m.opts.Concurrency, f)
}

func (m *Migration) parallel(ctx context.Context, n, limit int, f func(i int)) {
	var g errgroup.Group
	g.SetLimit(limit)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if ctx.Err() == nil {
				f(i)
			}
			return nil
		})
	}
	_ = g.Wait()
}

// readSmall reads the whole object at p, at most limit bytes.
func readSmall(ctx context.Context, d driver.Driver, p string, limit int64) ([]byte, error) {
	rc, err := d.Reader(ctx, p, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, limit))
}

// digestSet is a set of digests safe for concurrent use.
type digestSet struct {
	mu sync.Mutex
	m  map[digest.Digest]bool
}

func (s *digestSet) add(d digest.Digest) {
	s.mu.Lock()
	s.m[d] = true
	s.mu.Unlock()
}

func (s *digestSet) has(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[d]
}

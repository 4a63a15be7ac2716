package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/registryd/registryd/driver"
)

// FindingKind names a kind of inconsistency Fsck reports.
type FindingKind string

// The kinds of findings. Every one names the repository it was found in, except
// digest-mismatch and orphan-blob, which are about the blob store.
const (
	// FindingManifestBlobMissing: a manifest of the repository (tagged or not) references
	// a config or layer blob whose data is not in the blob store. Not repaired.
	FindingManifestBlobMissing FindingKind = "manifest-blob-missing"
	// FindingManifestLinkMissing: a manifest references a blob that is stored but that
	// the repository holds no layer link for: pulls of it answer BLOB_UNKNOWN. Not repaired.
	FindingManifestLinkMissing FindingKind = "manifest-link-missing"
	// FindingManifestChildMissing: an index references a child manifest the repository
	// holds no revision link for. Not repaired.
	FindingManifestChildMissing FindingKind = "manifest-child-missing"
	// FindingManifestUnreadable: manifest bytes that are not JSON of a schema registryd
	// knows, so their references are unknown. Not repaired.
	FindingManifestUnreadable FindingKind = "manifest-unreadable"
	// FindingTagManifestMissing: a tag whose manifest is gone (no revision link or no
	// data), or that has no current link. Repaired (the tag is removed) only with
	// RepairTags.
	FindingTagManifestMissing FindingKind = "tag-manifest-missing"
	// FindingTagLinkCorrupt: a tag's current link does not hold a digest. Repaired (the
	// tag is removed) only with RepairTags.
	FindingTagLinkCorrupt FindingKind = "tag-link-corrupt"
	// FindingLinkBlobMissing: a layer link or manifest revision link with no blob data
	// behind it. Repaired: the link is removed.
	FindingLinkBlobMissing FindingKind = "link-blob-missing"
	// FindingReferrerDangling: a referrer record whose referrer manifest is gone.
	// Repaired: the record is removed.
	FindingReferrerDangling FindingKind = "referrer-dangling"
	// FindingDigestMismatch: stored bytes that do not hash to their digest (found for
	// manifests on every run, for every blob with VerifyDigests). Not repaired.
	FindingDigestMismatch FindingKind = "digest-mismatch"
	// FindingOrphanBlob: blob data that no layer or revision link of any repository
	// names, written before the run started. Not repaired: removing unreferenced data is
	// garbage collection's job.
	FindingOrphanBlob FindingKind = "orphan-blob"
)

// Finding is one inconsistency Fsck found.
type Finding struct {
	Kind       FindingKind `json:"kind"`
	Repository string      `json:"repository,omitempty"`
	Tag        string      `json:"tag,omitempty"`
	// Manifest is the manifest the finding is about: the one referencing a missing
	// object, a tag's target, a referrer record's referrer.
	Manifest digest.Digest `json:"manifest,omitempty"`
	// Digest is the blob, link target or child the finding is about.
	Digest digest.Digest `json:"digest,omitempty"`
	// Path is the object key concerned (the link, record or blob data).
	Path string `json:"path"`
	// Size is the size of an orphan blob's data.
	Size int64 `json:"size,omitempty"`
	// Repaired reports that the run removed the object at Path.
	Repaired bool   `json:"repaired"`
	Message  string `json:"message"`
}

// String returns the finding as one line: its kind, what it is about, the message and
// whether it was repaired.
func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(string(f.Kind))
	for _, kv := range [][2]string{{"repository", f.Repository}, {"tag", f.Tag}, {"manifest", f.Manifest.String()}, {"digest", f.Digest.String()}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
		}
	}
	if f.Size > 0 {
		fmt.Fprintf(&b, " size=%d", f.Size)
	}
	fmt.Fprintf(&b, ": %s (%s)", f.Message, f.Path)
	if f.Repaired {
		b.WriteString(" [repaired]")
	}
	return b.String()
}

// FsckOptions configures a Fsck run. The zero value checks every repository, reads only
// manifests (not every blob) and changes nothing.
type FsckOptions struct {
	// VerifyDigests streams every blob's bytes through its digest's hash (the blobs of
	// the selected repositories when Repositories is set): it reads the whole store.
	VerifyDigests bool
	// Repair removes what is safe to remove, each re-checked just before: links with no
	// blob data and referrer records whose referrer is gone. It never removes blob data.
	Repair bool
	// RepairTags, with Repair, also removes the tags whose manifest is gone or whose
	// current link is corrupt (a pull of them fails already; the tag name disappears
	// from listings).
	RepairTags bool
	// Repositories selects the repositories to check by name, as
	// MigrateOptions.Repositories does ("team/*", "team/**"; "" for all). Orphan blobs
	// are only looked for when it is "".
	Repositories string
	// Parallel bounds the backend calls of the run in flight (default 16).
	Parallel int
	// Report receives every finding as it is made, one call at a time, in no particular
	// order. May be nil.
	Report func(Finding)
}

// FsckSummary counts what a Fsck run checked and found.
type FsckSummary struct {
	Repositories  int `json:"repositories"`
	Tags          int `json:"tags"`
	Manifests     int `json:"manifests"`
	LayerLinks    int `json:"layerLinks"`
	Referrers     int `json:"referrers"`
	Blobs         int `json:"blobs"`
	BlobsVerified int `json:"blobsVerified"`
	// BytesVerified is the number of bytes hashed with VerifyDigests.
	BytesVerified int64 `json:"bytesVerified"`
	// OrphansChecked reports that orphan blobs were looked for (every repository was
	// checked).
	OrphansChecked bool `json:"orphansChecked"`
	// Findings counts the findings by kind.
	Findings map[FindingKind]int `json:"findings"`
	// Repaired counts the findings whose object was removed.
	Repaired int `json:"repaired"`
}

// Total returns the number of findings.
func (s FsckSummary) Total() int {
	n := 0
	for _, k := range s.Findings {
		n += k
	}
	return n
}

// Fsck checks the consistency of the stored registry: every repository's layer and
// revision links against the blob store, every manifest's references (config and layer
// blobs, index children), every tag's manifest, every referrer record's referrer; orphan
// blobs; with VerifyDigests, the bytes of every blob. Findings go to opts.Report as they
// are made and are counted in the summary. A backend error (anything but a positive "not
// found") ends the run with that error and is never taken for a finding; an object that
// disappears between listing and reading (a concurrent delete) is skipped. Each missing
// object is confirmed with a direct lookup before it is reported, so a push running
// beside the check is not reported. Fsck is safe on a live registry.
func (r *Registry) Fsck(ctx context.Context, opts FsckOptions) (FsckSummary, error) {
	if opts.Parallel <= 0 {
		opts.Parallel = 16
	}
	if err := checkRepositoryPattern(opts.Repositories); err != nil {
		return FsckSummary{}, fmt.Errorf("fsck: %w", err)
	}
	// Every backend call of the run goes through one bound, however the work nests.
	lr, err := New(&limitedDriver{Driver: r.d, sem: make(chan struct{}, opts.Parallel)}, r.opts)
	if err != nil {
		return FsckSummary{}, err
	}
	f := &fsck{r: lr, opts: opts, start: time.Now(), linked: map[digest.Digest]bool{}, corrupt: map[digest.Digest]bool{},
		sum: FsckSummary{Findings: map[FindingKind]int{}}}
	blobs, err := f.listBlobs(ctx)
	if err != nil {
		return f.summary(), fmt.Errorf("fsck blobs: %w", err)
	}
	f.blobs = blobs
	f.sum.Blobs = len(blobs)
	// Repositories are checked side by side, as the walk yields them.
	g, gctx := f.group(ctx)
	for repo, err := range lr.Repositories(gctx, "") {
		if err != nil {
			g.Go(func() error { return fmt.Errorf("fsck repositories: %w", err) })
			break
		}
		if !matchRepository(opts.Repositories, repo) {
			continue
		}
		g.Go(func() error {
			if err := f.checkRepo(gctx, repo); err != nil {
				return fmt.Errorf("fsck %s: %w", repo, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return f.summary(), err
	}
	if opts.Repositories == "" {
		if err := f.orphans(ctx); err != nil {
			return f.summary(), fmt.Errorf("fsck orphans: %w", err)
		}
		f.sum.OrphansChecked = true
	}
	if opts.VerifyDigests {
		if err := f.verify(ctx); err != nil {
			return f.summary(), fmt.Errorf("fsck verify: %w", err)
		}
	}
	return f.summary(), nil
}

// fsck is the state of one Fsck run.
type fsck struct {
	r     *Registry
	opts  FsckOptions
	start time.Time
	blobs map[digest.Digest]bool // every blob whose directory the listing found

	mu      sync.Mutex
	linked  map[digest.Digest]bool // named by a layer or revision link of a checked repository
	corrupt map[digest.Digest]bool // reported as digest-mismatch already
	sum     FsckSummary
}

func (f *fsck) summary() FsckSummary {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sum
}

func (f *fsck) report(fd Finding) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sum.Findings[fd.Kind]++
	if fd.Repaired {
		f.sum.Repaired++
	}
	if f.opts.Report != nil {
		f.opts.Report(fd)
	}
}

func (f *fsck) count(p *int, n int) {
	f.mu.Lock()
	*p += n
	f.mu.Unlock()
}

func (f *fsck) group(ctx context.Context) (*errgroup.Group, context.Context) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.opts.Parallel)
	return g, gctx
}

// listBlobs lists the blob store: blobs/<alg>/<two hex>/<hex>/.
func (f *fsck) listBlobs(ctx context.Context) (map[digest.Digest]bool, error) {
	root := rootPrefix + "/blobs"
	algs, err := f.r.subdirs(ctx, root)
	if err != nil {
		return nil, err
	}
	blobs := map[digest.Digest]bool{}
	var mu sync.Mutex
	g, gctx := f.group(ctx)
	for _, alg := range algs {
		prefixes, err := f.r.subdirs(ctx, root+"/"+alg)
		if err != nil {
			return nil, err
		}
		for _, pre := range prefixes {
			g.Go(func() error {
				hexes, err := f.r.subdirs(gctx, root+"/"+alg+"/"+pre)
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				for _, hex := range hexes {
					if d, err := digest.Parse(alg + ":" + hex); err == nil && strings.HasPrefix(hex, pre) {
						blobs[d] = true
					}
				}
				return nil
			})
		}
	}
	return blobs, g.Wait()
}

// missing confirms with a Stat that nothing is at p.
func (f *fsck) missing(ctx context.Context, p string) (bool, error) {
	_, err := f.r.d.Stat(ctx, p)
	if errors.Is(err, driver.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", p, err)
	}
	return false, nil
}

// blobMissing reports whether blob d's data is not stored, looking it up unless the
// listing found it.
func (f *fsck) blobMissing(ctx context.Context, d digest.Digest) (bool, error) {
	if f.blobs[d] {
		return false, nil
	}
	return f.missing(ctx, blobDataPath(d))
}

// remove deletes p for a repair; a p already gone counts as removed.
func (f *fsck) remove(ctx context.Context, p string) error {
	if err := f.r.d.Delete(ctx, p); err != nil && !errors.Is(err, driver.ErrNotFound) {
		return fmt.Errorf("repair: delete %s: %w", p, err)
	}
	return nil
}

// repoLinks is what checkRepo learnt of one repository's links.
type repoLinks struct {
	layers    map[digest.Digest]bool
	revisions map[digest.Digest]bool
	gone      map[digest.Digest]bool // revision links without manifest data
}

// checkRepo checks one repository: its layer links, its manifests and their references,
// its tags and its referrer records.
func (f *fsck) checkRepo(ctx context.Context, repo string) error {
	f.count(&f.sum.Repositories, 1)
	layers, err := digestDirs(ctx, f.r.d, repoDir(repo)+"/_layers")
	if err != nil {
		return err
	}
	revisions, err := digestDirs(ctx, f.r.d, repoDir(repo)+"/_manifests/revisions")
	if err != nil {
		return err
	}
	f.count(&f.sum.LayerLinks, len(layers))
	f.count(&f.sum.Manifests, len(revisions))
	rl := &repoLinks{layers: map[digest.Digest]bool{}, revisions: map[digest.Digest]bool{}, gone: map[digest.Digest]bool{}}
	f.mu.Lock()
	for _, d := range layers {
		rl.layers[d] = true
		f.linked[d] = true
	}
	for _, d := range revisions {
		rl.revisions[d] = true
		f.linked[d] = true
	}
	f.mu.Unlock()

	// Links with no data behind them, then every manifest's references.
	var goneMu sync.Mutex
	g, gctx := f.group(ctx)
	for _, d := range layers {
		g.Go(func() error {
			_, err := f.danglingLink(gctx, repo, d, layerLinkPath(repo, d), "layer link")
			return err
		})
	}
	for _, d := range revisions {
		g.Go(func() error {
			gone, err := f.danglingLink(gctx, repo, d, revisionLinkPath(repo, d), "manifest revision link")
			if err == nil && !gone {
				gone, err = f.checkManifest(gctx, repo, d, rl)
			}
			if gone {
				goneMu.Lock()
				rl.gone[d] = true
				goneMu.Unlock()
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := f.checkTags(ctx, repo, rl); err != nil {
		return err
	}
	return f.checkReferrers(ctx, repo, rl)
}

// danglingLink reports (and with Repair removes) the link at p of blob d when the blob's
// data is missing; it returns whether it is.
func (f *fsck) danglingLink(ctx context.Context, repo string, d digest.Digest, p, what string) (bool, error) {
	gone, err := f.blobMissing(ctx, d)
	if err != nil || !gone {
		return false, err
	}
	fd := Finding{Kind: FindingLinkBlobMissing, Repository: repo, Digest: d, Path: p,
		Message: what + " with no blob data behind it"}
	if f.opts.Repair {
		if err := f.remove(ctx, p); err != nil {
			return true, err
		}
		fd.Repaired = true
	}
	f.report(fd)
	return true, nil
}

// checkManifest reads manifest d of the repository and checks its references; it
// returns true when the manifest's data turned out to be gone meanwhile.
func (f *fsck) checkManifest(ctx context.Context, repo string, d digest.Digest, rl *repoLinks) (bool, error) {
	refs, err := f.r.manifestReferences(ctx, d)
	switch {
	case errors.Is(err, driver.ErrNotFound):
		return f.danglingLink(ctx, repo, d, revisionLinkPath(repo, d), "manifest revision link")
	case errors.Is(err, ErrBlobCorrupt):
		f.mu.Lock()
		seen := f.corrupt[d]
		f.corrupt[d] = true
		f.mu.Unlock()
		if !seen {
			f.report(Finding{Kind: FindingDigestMismatch, Repository: repo, Digest: d, Path: blobDataPath(d),
				Message: "stored manifest bytes do not match their digest"})
		}
		return false, nil
	case errors.Is(err, errUnknownManifest):
		f.report(Finding{Kind: FindingManifestUnreadable, Repository: repo, Manifest: d, Path: blobDataPath(d),
			Message: "manifest of an unknown schema: its references are unknown (" + err.Error() + ")"})
		return false, nil
	case err != nil:
		return false, err
	}
	for _, b := range refs.Blobs {
		gone, err := f.blobMissing(ctx, b)
		if err != nil {
			return false, err
		}
		if gone {
			f.report(Finding{Kind: FindingManifestBlobMissing, Repository: repo, Manifest: d, Digest: b, Path: blobDataPath(b),
				Message: "manifest references a blob whose data is missing"})
			continue
		}
		if !rl.layers[b] {
			if gone, err := f.missing(ctx, layerLinkPath(repo, b)); err != nil {
				return false, err
			} else if gone {
				f.report(Finding{Kind: FindingManifestLinkMissing, Repository: repo, Manifest: d, Digest: b, Path: layerLinkPath(repo, b),
					Message: "manifest references a blob the repository has no layer link for"})
			}
		}
	}
	for _, c := range refs.Manifests {
		p, what := revisionLinkPath(repo, c), "index references a child manifest the repository does not hold"
		var gone bool
		if rl.revisions[c] {
			// Linked: its data must be there too (the child's own link is reported
			// dangling as well).
			p, what = blobDataPath(c), "index references a child manifest whose data is missing"
			gone, err = f.blobMissing(ctx, c)
		} else {
			gone, err = f.missing(ctx, p)
		}
		if err != nil {
			return false, err
		}
		if gone {
			f.report(Finding{Kind: FindingManifestChildMissing, Repository: repo, Manifest: d, Digest: c, Path: p, Message: what})
		}
	}
	return false, nil
}

// manifestGone reports whether manifest d of the repository is gone: no revision link
// or no data. The run's listing answers for the manifests it found whole; others are
// looked up.
func (f *fsck) manifestGone(ctx context.Context, repo string, d digest.Digest, rl *repoLinks) (bool, error) {
	if rl.revisions[d] && !rl.gone[d] {
		return false, nil
	}
	if gone, err := f.missing(ctx, revisionLinkPath(repo, d)); err != nil || gone {
		return gone, err
	}
	return f.missing(ctx, blobDataPath(d))
}

// checkTags checks that every tag of the repository resolves to a stored manifest.
func (f *fsck) checkTags(ctx context.Context, repo string, rl *repoLinks) error {
	tags, err := f.r.allTags(ctx, repo)
	if err != nil {
		return err
	}
	f.count(&f.sum.Tags, len(tags))
	g, gctx := f.group(ctx)
	for _, tag := range tags {
		g.Go(func() error { return f.checkTag(gctx, repo, tag, rl) })
	}
	return g.Wait()
}

func (f *fsck) checkTag(ctx context.Context, repo, tag string, rl *repoLinks) error {
	p := tagCurrentPath(repo, tag)
	fd := Finding{Repository: repo, Tag: tag, Path: p}
	d, err := f.r.readLink(ctx, p)
	switch {
	case errors.Is(err, driver.ErrNotFound):
		// The tag's directory holds no current link: listed, never resolving (or being
		// deleted right now: look again).
		if ok, err := f.r.tagListed(ctx, repo, tag); err != nil || !ok {
			return err
		}
		fd.Kind, fd.Message = FindingTagManifestMissing, "tag has no current link"
	case errors.Is(err, errCorruptLink):
		fd.Kind, fd.Message = FindingTagLinkCorrupt, "tag's current link does not hold a digest"
	case err != nil:
		return fmt.Errorf("read tag %s: %w", tag, err)
	default:
		gone, err := f.manifestGone(ctx, repo, d, rl)
		if err != nil || !gone {
			return err
		}
		fd.Kind, fd.Manifest, fd.Message = FindingTagManifestMissing, d, "tag points at a manifest that is gone"
	}
	if f.opts.Repair && f.opts.RepairTags {
		// Re-check just before: the tag may have been moved or repaired meanwhile, and is
		// then left alone and not reported.
		now, err := f.r.readLink(ctx, p)
		switch {
		case fd.Manifest != "" && (err != nil || now != d):
		case fd.Kind == FindingTagLinkCorrupt && !errors.Is(err, errCorruptLink):
		case fd.Manifest == "" && fd.Kind == FindingTagManifestMissing && !errors.Is(err, driver.ErrNotFound):
		default:
			if err := f.remove(ctx, tagDir(repo, tag)); err != nil {
				return err
			}
			fd.Repaired, fd.Path = true, tagDir(repo, tag)
			f.report(fd)
			return nil
		}
		if err != nil && !errors.Is(err, driver.ErrNotFound) && !errors.Is(err, errCorruptLink) {
			return fmt.Errorf("read tag %s: %w", tag, err)
		}
		return nil
	}
	f.report(fd)
	return nil
}

// tagListed reports whether the tag's directory still holds anything.
func (r *Registry) tagListed(ctx context.Context, repo, tag string) (bool, error) {
	l, err := r.d.List(ctx, tagDir(repo, tag), "", 1)
	if err != nil {
		return false, fmt.Errorf("list tag %s: %w", tag, err)
	}
	return len(l) > 0, nil
}

// checkReferrers checks that every referrer record of the repository names a stored
// manifest.
func (f *fsck) checkReferrers(ctx context.Context, repo string, rl *repoLinks) error {
	subjects, err := digestDirs(ctx, f.r.d, repoDir(repo)+"/_referrers")
	if err != nil {
		return err
	}
	g, gctx := f.group(ctx)
	for _, s := range subjects {
		g.Go(func() error {
			records, err := listAll(gctx, f.r.d, referrersDir(repo, s))
			if err != nil {
				return err
			}
			for _, rec := range records {
				d, ok := referrerRecord(rec)
				if !ok {
					continue
				}
				f.count(&f.sum.Referrers, 1)
				if err := f.checkReferrer(gctx, repo, s, d, rec.Path, rl); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

func (f *fsck) checkReferrer(ctx context.Context, repo string, subject, d digest.Digest, p string, rl *repoLinks) error {
	gone, err := f.manifestGone(ctx, repo, d, rl)
	if err != nil || !gone {
		return err
	}
	fd := Finding{Kind: FindingReferrerDangling, Repository: repo, Manifest: d, Digest: subject, Path: p,
		Message: "referrer record of a manifest that is gone"}
	if f.opts.Repair {
		if err := f.remove(ctx, p); err != nil {
			return err
		}
		fd.Repaired = true
	}
	f.report(fd)
	return nil
}

// orphans reports the blobs no checked link names that were stored before the run.
func (f *fsck) orphans(ctx context.Context) error {
	var cands []digest.Digest
	for d := range f.blobs {
		if !f.linked[d] {
			cands = append(cands, d)
		}
	}
	slices.Sort(cands)
	g, gctx := f.group(ctx)
	for _, d := range cands {
		g.Go(func() error {
			fi, err := f.r.d.Stat(gctx, blobDataPath(d))
			if errors.Is(err, driver.ErrNotFound) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("stat %s: %w", blobDataPath(d), err)
			}
			if !fi.ModTime.Before(f.start) {
				return nil // pushed while the run was going: its link may follow
			}
			f.report(Finding{Kind: FindingOrphanBlob, Digest: d, Path: blobDataPath(d), Size: fi.Size,
				Message: "blob data no repository links (garbage collection reclaims it)"})
			return nil
		})
	}
	return g.Wait()
}

// verify streams the bytes of the blobs to check through their digest's hash: every
// listed blob, or those the checked repositories link when Repositories is set.
func (f *fsck) verify(ctx context.Context) error {
	var todo []digest.Digest
	for d := range f.blobs {
		if (f.opts.Repositories == "" || f.linked[d]) && !f.corrupt[d] {
			todo = append(todo, d)
		}
	}
	slices.Sort(todo)
	g, gctx := f.group(ctx)
	for _, d := range todo {
		g.Go(func() error {
			rc, err := f.r.d.Reader(gctx, blobDataPath(d), 0, -1)
			if errors.Is(err, driver.ErrNotFound) {
				return nil // removed since the listing
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", blobDataPath(d), err)
			}
			defer rc.Close()
			h := d.Algorithm().Hash()
			n, err := io.Copy(h, rc)
			if err != nil {
				return fmt.Errorf("read %s: %w", blobDataPath(d), err)
			}
			f.mu.Lock()
			f.sum.BlobsVerified++
			f.sum.BytesVerified += n
			f.mu.Unlock()
			if got := digest.NewDigest(d.Algorithm(), h); got != d {
				f.report(Finding{Kind: FindingDigestMismatch, Digest: d, Path: blobDataPath(d), Size: n,
					Message: "stored bytes hash to " + got.String()})
			}
			return nil
		})
	}
	return g.Wait()
}

// limitedDriver bounds the calls in flight to the capacity of sem (a Reader's stream is
// not counted: only opening it).
type limitedDriver struct {
	driver.Driver
	sem chan struct{}
}

func (l *limitedDriver) acquire(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *limitedDriver) release() { <-l.sem }

func (l *limitedDriver) Stat(ctx context.Context, p string) (driver.Info, error) {
	if err := l.acquire(ctx); err != nil {
		return driver.Info{}, err
	}
	defer l.release()
	return l.Driver.Stat(ctx, p)
}

func (l *limitedDriver) Reader(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	defer l.release()
	return l.Driver.Reader(ctx, p, offset, length)
}

func (l *limitedDriver) List(ctx context.Context, dir, after string, limit int) ([]driver.Info, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	defer l.release()
	return l.Driver.List(ctx, dir, after, limit)
}

func (l *limitedDriver) Delete(ctx context.Context, p string) error {
	if err := l.acquire(ctx); err != nil {
		return err
	}
	defer l.release()
	return l.Driver.Delete(ctx, p)
}

package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/registryd/registryd/driver"
	regerr "github.com/registryd/registryd/errors"
)

// Tags returns up to n tags of the repository in lexical order, starting after last, and
// whether more follow. n <= 0 returns none (but still checks the repository exists).
// NAME_UNKNOWN if the repository holds nothing.
func (r *Registry) Tags(ctx context.Context, repo, last string, n int) ([]string, bool, error) {
	after := ""
	if last != "" {
		after = tagDir(repo, last)
	}
	var tags []string
	more := false
	if n > 0 {
		l, err := r.d.List(ctx, tagsDir(repo), after, n+1)
		if err != nil {
			return nil, false, fmt.Errorf("list tags: %w", err)
		}
		for _, fi := range l {
			if fi.IsDir {
				tags = append(tags, path.Base(fi.Path))
			}
		}
		if len(tags) > n {
			tags, more = tags[:n], true
		}
	}
	if len(tags) == 0 && last == "" {
		ok, err := r.RepositoryExists(ctx, repo)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			return nil, false, regerr.NameUnknown.WithDetail(map[string]string{"name": repo})
		}
	}
	if tags == nil {
		tags = []string{}
	}
	return tags, more, nil
}

// allTags lists every tag of a repository.
func (r *Registry) allTags(ctx context.Context, repo string) ([]string, error) {
	tags, err := r.subdirs(ctx, tagsDir(repo))
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	return tags, nil
}

// subdirs returns the names of the directories directly under dir, in order.
func (r *Registry) subdirs(ctx context.Context, dir string) ([]string, error) {
	l, err := listAll(ctx, r.d, dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, fi := range l {
		if fi.IsDir {
			names = append(names, path.Base(fi.Path))
		}
	}
	return names, nil
}

// listAll lists every entry directly under dir, in order, page by page.
func listAll(ctx context.Context, d driver.Driver, dir string) ([]driver.Info, error) {
	var all []driver.Info
	after := ""
	for {
		l, err := d.List(ctx, dir, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		all = append(all, l...)
		if len(l) < 1000 {
			return all, nil
		}
		after = l[len(l)-1].Path
	}
}

// digestDirs returns the digests of a <dir>/<alg>/<hex>/ tree (layer links, revisions,
// referrer subjects), in order, skipping entries that are not valid digests.
func digestDirs(ctx context.Context, d driver.Driver, dir string) ([]digest.Digest, error) {
	algs, err := listAll(ctx, d, dir)
	if err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, a := range algs {
		if !a.IsDir {
			continue
		}
		l, err := hexDirs(ctx, d, a.Path, digest.Algorithm(path.Base(a.Path)))
		if err != nil {
			return nil, err
		}
		out = append(out, l...)
	}
	return out, nil
}

// hexDirs returns the digests of algorithm alg named by the directories under dir.
func hexDirs(ctx context.Context, d driver.Driver, dir string, alg digest.Algorithm) ([]digest.Digest, error) {
	hexes, err := listAll(ctx, d, dir)
	if err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, h := range hexes {
		if !h.IsDir {
			continue
		}
		if dg := digest.NewDigestFromEncoded(alg, path.Base(h.Path)); dg.Validate() == nil {
			out = append(out, dg)
		}
	}
	return out, nil
}

// referrerRecord returns the manifest digest a referrer record entry (<alg>-<hex>, see
// referrerPath) is named after, and false for any other entry of a referrers directory.
func referrerRecord(fi driver.Info) (digest.Digest, bool) {
	alg, hex, ok := strings.Cut(path.Base(fi.Path), "-")
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	if fi.IsDir || !ok || d.Validate() != nil {
		return "", false
	}
	return d, true
}

// Catalog returns up to n repository names in byte order after last (n < 0: all), and
// whether more follow. It reads the walk of Repositories only as far as the n+1-th name,
// so a page costs backend calls in proportion to its size, not to the registry's.
func (r *Registry) Catalog(ctx context.Context, last string, n int) ([]string, bool, error) {
	names := []string{}
	for name, err := range r.Repositories(ctx, last) {
		if err != nil {
			return nil, false, err
		}
		if n >= 0 && len(names) == n {
			return names, true, nil
		}
		names = append(names, name)
	}
	return names, false, nil
}

// referrer is the descriptor stored for a manifest that has a subject.
func (r *Registry) putReferrer(ctx context.Context, repo string, m *manifestJSON, mt string, d digest.Digest, size int64) error {
	desc := ocispec.Descriptor{MediaType: mt, Digest: d, Size: size, ArtifactType: m.ArtifactType, Annotations: m.Annotations}
	if desc.ArtifactType == "" && m.Config != nil {
		desc.ArtifactType = m.Config.MediaType
	}
	b, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	if err := r.d.Put(ctx, referrerPath(repo, m.Subject.Digest, d), strings.NewReader(string(b)), int64(len(b))); err != nil {
		return fmt.Errorf("record referrer: %w", err)
	}
	return nil
}

// Referrers returns the descriptors of the manifests whose subject is d, filtered by
// artifactType when non-empty, in digest order. No referrers is an empty list, not an
// error.
func (r *Registry) Referrers(ctx context.Context, repo string, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	entries, err := listAll(ctx, r.d, referrersDir(repo, subject))
	if err != nil {
		return nil, fmt.Errorf("list referrers: %w", err)
	}
	descs := make([]*ocispec.Descriptor, len(entries))
	errs := make([]error, len(entries))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, fi := range entries {
		if fi.IsDir {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			descs[i], errs[i] = r.readReferrer(ctx, repo, fi.Path)
		}()
	}
	wg.Wait()
	out := []ocispec.Descriptor{}
	for i, d := range descs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if d != nil && (artifactType == "" || d.ArtifactType == artifactType) {
			out = append(out, *d)
		}
	}
	return out, nil
}

// readReferrer reads one referrer record; one whose manifest was deleted meanwhile is
// skipped (nil, nil).
func (r *Registry) readReferrer(ctx context.Context, repo, p string) (*ocispec.Descriptor, error) {
	rc, err := r.d.Reader(ctx, p, 0, -1)
	if errors.Is(err, driver.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read referrer: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read referrer: %w", err)
	}
	var d ocispec.Descriptor
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("corrupt referrer record %s: %w", p, err)
	}
	if _, err := r.d.Stat(ctx, revisionLinkPath(repo, d.Digest)); errors.Is(err, driver.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("stat referrer manifest: %w", err)
	}
	return &d, nil
}

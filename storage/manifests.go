package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/registryd/registryd/driver"
	regerr "github.com/registryd/registryd/errors"
)

// Manifest media types registryd stores.
const (
	MediaTypeOCIManifest    = ocispec.MediaTypeImageManifest
	MediaTypeOCIIndex       = ocispec.MediaTypeImageIndex
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// Manifest is a stored manifest.
type Manifest struct {
	Digest    digest.Digest
	MediaType string
	Body      []byte
	// Subject is the digest of the manifest's subject field, if any.
	Subject digest.Digest
	// Tags lists the tags a PutManifest pointed at the manifest.
	Tags []string
}

// manifestJSON holds the fields of every supported manifest kind.
type manifestJSON struct {
	SchemaVersion *int                 `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
}

func invalid(format string, args ...any) error {
	return regerr.ManifestInvalid.WithMessage("manifest invalid: "+format, args...)
}

// parseManifest validates body against the Content-Type the client sent (may be empty)
// and returns the parsed manifest and its effective media type.
func parseManifest(body []byte, contentType string) (*manifestJSON, string, error) {
	var m manifestJSON
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, "", invalid("not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, "", invalid("trailing data after the JSON document")
	}
	if m.SchemaVersion == nil || *m.SchemaVersion != 2 {
		return nil, "", invalid("schemaVersion must be 2")
	}
	ct := ""
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, "", invalid("malformed Content-Type %q", contentType)
		}
		ct = mt
	}
	mt := m.MediaType
	switch {
	case mt != "" && ct != "" && ct != mt:
		return nil, "", invalid("Content-Type %q does not match the manifest's mediaType %q", ct, mt)
	case mt == "" && ct != "":
		mt = ct
	case mt == "" && m.Manifests != nil:
		mt = MediaTypeOCIIndex
	case mt == "":
		mt = MediaTypeOCIManifest
	}
	switch mt {
	case MediaTypeOCIManifest, MediaTypeDockerManifest:
		if m.Config == nil {
			return nil, "", invalid("%s requires config", mt)
		}
		if m.Manifests != nil {
			return nil, "", invalid("%s must not have manifests", mt)
		}
		if mt == MediaTypeDockerManifest && m.MediaType == "" {
			return nil, "", invalid("%s requires the mediaType field", mt)
		}
		if err := checkDescriptors(append([]ocispec.Descriptor{*m.Config}, m.Layers...)); err != nil {
			return nil, "", err
		}
	case MediaTypeOCIIndex, MediaTypeDockerList:
		if m.Manifests == nil {
			return nil, "", invalid("%s requires manifests", mt)
		}
		if m.Config != nil || m.Layers != nil {
			return nil, "", invalid("%s must not have config or layers", mt)
		}
		if err := checkDescriptors(m.Manifests); err != nil {
			return nil, "", err
		}
	default:
		return nil, "", invalid("unsupported manifest media type %q", mt)
	}
	if m.Subject != nil {
		if err := checkDescriptors([]ocispec.Descriptor{*m.Subject}); err != nil {
			return nil, "", err
		}
	}
	return &m, mt, nil
}

func checkDescriptors(ds []ocispec.Descriptor) error {
	for _, d := range ds {
		if _, err := ParseDigest(d.Digest.String()); err != nil {
			return invalid("descriptor digest %q invalid", d.Digest)
		}
		if d.Size < 0 {
			return invalid("descriptor %s has negative size", d.Digest)
		}
		if d.MediaType == "" {
			return invalid("descriptor %s has no mediaType", d.Digest)
		}
	}
	return nil
}

// foreign reports layers that are not pushed to registries (their bytes live at URLs).
func foreign(d ocispec.Descriptor) bool {
	return len(d.URLs) > 0 && (strings.Contains(d.MediaType, "nondistributable") || strings.Contains(d.MediaType, "foreign"))
}

// PutManifest validates and stores a manifest under ref (a tag or its digest) and the
// extra tags. Everything it references must already be in the repository (blobs:
// MANIFEST_BLOB_UNKNOWN; index children: MANIFEST_UNKNOWN, both 400); the subject need not.
// Write order makes a crash safe: bytes, then revision link, then referrer, then each tag's
// current link and index, so no tag ever points at a missing manifest and no listed tag
// fails to resolve. Between the referrer and the tags, the references are checked again
// after any running garbage collection sweep batch (see gc_protect.go).
func (r *Registry) PutManifest(ctx context.Context, repo, ref string, body []byte, contentType string, tags []string) (*Manifest, error) {
	m, mt, err := parseManifest(body, contentType)
	if err != nil {
		return nil, err
	}
	dg := digest.FromBytes(body)
	if IsDigest(ref) {
		want, err := ParseDigest(ref)
		if err != nil {
			return nil, err
		}
		if want.Algorithm() != digest.SHA256 {
			dg = want.Algorithm().FromBytes(body)
		}
		if dg != want {
			return nil, regerr.DigestInvalid.WithMessage("manifest digest %s does not match reference %s", dg, want)
		}
	} else {
		tags = append([]string{ref}, tags...)
	}
	// References are checked before anything is written (a push missing a blob changes
	// nothing), and again once the manifest is stored (see gc_protect.go).
	if err := r.checkReferences(ctx, repo, m, false); err != nil {
		return nil, err
	}
	if err := r.commitManifest(ctx, repo, m, mt, dg, body); err != nil {
		return nil, err
	}
	out := &Manifest{Digest: dg, MediaType: mt, Body: body, Tags: tags}
	if m.Subject != nil {
		out.Subject = m.Subject.Digest
	}
	for _, tag := range tags {
		// The current link first: the index link alone would make the tag appear in
		// listings (they list tag directories) without resolving.
		if err := r.putLink(ctx, tagCurrentPath(repo, tag), dg); err != nil {
			return nil, fmt.Errorf("tag: %w", err)
		}
		if err := r.putLink(ctx, tagIndexLinkPath(repo, tag, dg), dg); err != nil {
			return nil, fmt.Errorf("tag index: %w", err)
		}
	}
	return out, nil
}

// checkReferences stats every referenced blob or manifest, 8 at a time: the
// repository's links and, with stored, the bytes behind them too.
func (r *Registry) checkReferences(ctx context.Context, repo string, m *manifestJSON, stored bool) error {
	type check struct {
		path string
		desc regerr.Descriptor
		d    digest.Digest
	}
	var checks []check
	add := func(link string, desc regerr.Descriptor, d digest.Digest) {
		checks = append(checks, check{link, desc, d})
		if stored {
			checks = append(checks, check{blobDataPath(d), desc, d})
		}
	}
	if m.Config != nil {
		add(layerLinkPath(repo, m.Config.Digest), regerr.ManifestBlobUnknown, m.Config.Digest)
	}
	for _, l := range m.Layers {
		if !foreign(l) && !r.opts.AllowSparse {
			add(layerLinkPath(repo, l.Digest), regerr.ManifestBlobUnknown, l.Digest)
		}
	}
	for _, c := range m.Manifests {
		if r.opts.AllowSparse {
			break
		}
		add(revisionLinkPath(repo, c.Digest), regerr.ManifestChildUnknown, c.Digest)
	}
	errs := make([]error, len(checks))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := r.d.Stat(ctx, c.path); err != nil {
				errs[i] = notFound(err, c.desc, map[string]string{"digest": c.d.String()}, "stat referenced "+c.d.String())
			}
		}()
	}
	wg.Wait()
	return firstNonNil(errs)
}

func firstNonNil(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// ResolveTag returns the digest a tag points at (MANIFEST_UNKNOWN if none).
func (r *Registry) ResolveTag(ctx context.Context, repo, tag string) (digest.Digest, error) {
	d, err := r.readLink(ctx, tagCurrentPath(repo, tag))
	if err != nil {
		return "", notFound(err, regerr.ManifestUnknown, map[string]string{"tag": tag}, "read tag")
	}
	return d, nil
}

// GetManifest returns the manifest ref (tag or digest) of the repository, with the media
// type it was stored with.
func (r *Registry) GetManifest(ctx context.Context, repo, ref string) (*Manifest, error) {
	var dg digest.Digest
	var err error
	if IsDigest(ref) {
		if dg, err = ParseDigest(ref); err != nil {
			return nil, err
		}
	} else if dg, err = r.ResolveTag(ctx, repo, ref); err != nil {
		return nil, err
	}
	detail := map[string]string{"reference": ref}
	// The manifest is read while its revision link is looked up; the read is cancelled as
	// soon as the link is known to be missing or unreadable.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	read := inBackground("read manifest", func() ([]byte, error) { return r.readManifest(rctx, dg, detail) })
	_, linkErr := r.d.Stat(ctx, revisionLinkPath(repo, dg))
	if linkErr != nil {
		cancel()
	}
	body, readErr := read.Wait()
	if linkErr != nil {
		return nil, notFound(linkErr, regerr.ManifestUnknown, detail, "stat manifest link")
	}
	if readErr != nil {
		return nil, readErr
	}
	if got := dg.Algorithm().FromBytes(body); got != dg {
		return nil, fmt.Errorf("manifest %s hashes to %s: %w", dg, got, ErrBlobCorrupt)
	}
	m := &Manifest{Digest: dg, Body: body}
	var mj manifestJSON
	if err := json.Unmarshal(body, &mj); err == nil {
		m.MediaType = mj.MediaType
		if mj.Subject != nil {
			m.Subject = mj.Subject.Digest
		}
		if m.MediaType == "" {
			m.MediaType = MediaTypeOCIManifest
			if mj.Manifests != nil {
				m.MediaType = MediaTypeOCIIndex
			}
		}
	}
	if m.MediaType == "" {
		// Not JSON we understand (for instance a schema1 manifest written by another
		// registry): serve it as stored.
		m.MediaType = "application/octet-stream"
	}
	return m, nil
}

// readManifest reads the stored bytes of manifest dg (MANIFEST_UNKNOWN, with detail,
// when there are none).
func (r *Registry) readManifest(ctx context.Context, dg digest.Digest, detail map[string]string) ([]byte, error) {
	rc, err := r.d.Reader(ctx, blobDataPath(dg), 0, -1)
	if err != nil {
		return nil, notFound(err, regerr.ManifestUnknown, detail, "open manifest")
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", dg, err)
	}
	return body, nil
}

// DeleteManifest deletes a manifest by digest (its revision link, every tag pointing at it
// and its referrer record) or, when ref is a tag, just that tag.
func (r *Registry) DeleteManifest(ctx context.Context, repo, ref string) error {
	if !IsDigest(ref) {
		if err := r.d.Delete(ctx, tagDir(repo, ref)); err != nil {
			return notFound(err, regerr.ManifestUnknown, map[string]string{"tag": ref}, "delete tag")
		}
		return nil
	}
	m, err := r.GetManifest(ctx, repo, ref)
	if err != nil {
		return err
	}
	// Untag first so no tag is left pointing at a deleted manifest.
	tags, err := r.allTags(ctx, repo)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		d, err := r.readLink(ctx, tagCurrentPath(repo, tag))
		if errors.Is(err, driver.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read tag %s: %w", tag, err)
		}
		if d == m.Digest {
			if err := r.d.Delete(ctx, tagDir(repo, tag)); err != nil && !errors.Is(err, driver.ErrNotFound) {
				return fmt.Errorf("delete tag %s: %w", tag, err)
			}
		}
	}
	if m.Subject != "" {
		if err := r.d.Delete(ctx, referrerPath(repo, m.Subject, m.Digest)); err != nil && !errors.Is(err, driver.ErrNotFound) {
			return fmt.Errorf("delete referrer: %w", err)
		}
	}
	if err := r.d.Delete(ctx, revisionLinkPath(repo, m.Digest)); err != nil {
		return notFound(err, regerr.ManifestUnknown, map[string]string{"reference": ref}, "delete manifest link")
	}
	return nil
}

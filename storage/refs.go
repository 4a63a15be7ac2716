package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// The reference graph: what a stored manifest points at. Garbage collection marks along
// it and fsck checks that every edge leads to something stored.

// References lists what one manifest references.
type References struct {
	// Blobs are the config and layer blobs the repository must hold (a layer link each)
	// and whose bytes must be stored; foreign (non-distributable) layers, whose bytes live
	// at URLs, are left out.
	Blobs []digest.Digest
	// Manifests are the child manifests of an index, which the repository must hold (a
	// revision link each).
	Manifests []digest.Digest
	// Subject is the manifest's subject ("" when it has none): the manifest is a referrer
	// of it. The subject need not be stored.
	Subject digest.Digest
}

// errUnknownManifest reports stored manifest bytes whose references cannot be read: not
// JSON, or no schema this registry knows.
var errUnknownManifest = errors.New("manifest of an unknown schema")

// maxManifestRead bounds how much of a stored manifest is read to learn its references.
const maxManifestRead = 64 << 20

// parseReferences returns the references of the manifest body (any media type registryd
// stores, and the schema1 manifests CNCF Distribution may have stored). Digests that do
// not parse are an error: the manifest's edges would be unknown.
func parseReferences(body []byte) (References, error) {
	var m struct {
		manifestJSON
		FSLayers []struct {
			BlobSum string `json:"blobSum"`
		} `json:"fsLayers"` // schema1
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return References{}, fmt.Errorf("%w: %w", errUnknownManifest, err)
	}
	var refs References
	add := func(list *[]digest.Digest, s string) error {
		d, err := digest.Parse(s)
		if err != nil {
			return fmt.Errorf("%w: descriptor digest %q: %w", errUnknownManifest, s, err)
		}
		*list = append(*list, d)
		return nil
	}
	if m.Config != nil {
		if err := add(&refs.Blobs, m.Config.Digest.String()); err != nil {
			return References{}, err
		}
	}
	for _, l := range m.Layers {
		if foreign(l) {
			continue
		}
		if err := add(&refs.Blobs, l.Digest.String()); err != nil {
			return References{}, err
		}
	}
	for _, l := range m.FSLayers {
		if err := add(&refs.Blobs, l.BlobSum); err != nil {
			return References{}, err
		}
	}
	for _, c := range m.Manifests {
		if err := add(&refs.Manifests, c.Digest.String()); err != nil {
			return References{}, err
		}
	}
	if m.Subject != nil {
		var s []digest.Digest
		if err := add(&s, m.Subject.Digest.String()); err != nil {
			return References{}, err
		}
		refs.Subject = s[0]
	}
	if m.Config == nil && m.Manifests == nil && m.FSLayers == nil && m.Layers == nil {
		return References{}, fmt.Errorf("%w: no config, layers or manifests", errUnknownManifest)
	}
	return refs, nil
}

// manifestReferences reads the stored bytes of manifest d and returns its references.
// A manifest whose bytes are missing is an error wrapping driver.ErrNotFound; bytes of
// an unknown schema wrap errUnknownManifest; bytes that do not hash to d wrap
// ErrBlobCorrupt.
func (r *Registry) manifestReferences(ctx context.Context, d digest.Digest) (References, error) {
	rc, err := r.d.Reader(ctx, blobDataPath(d), 0, -1)
	if err != nil {
		return References{}, fmt.Errorf("read manifest %s: %w", d, err)
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxManifestRead))
	if err != nil {
		return References{}, fmt.Errorf("read manifest %s: %w", d, err)
	}
	if got := d.Algorithm().FromBytes(body); got != d {
		return References{}, fmt.Errorf("manifest %s hashes to %s: %w", d, got, ErrBlobCorrupt)
	}
	refs, err := parseReferences(body)
	if err != nil {
		return References{}, fmt.Errorf("manifest %s: %w", d, err)
	}
	return refs, nil
}

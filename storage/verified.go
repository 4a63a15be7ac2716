package storage

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"
)

// verifiedCapacity bounds the blobs a Registry remembers as verified (about 200 bytes
// each).
const verifiedCapacity = 50_000

// verifiedSet remembers, for a bounded number of blobs, the backend version of the blob's
// object whose bytes this process has seen hash to the digest: it wrote them after
// verifying the upload, or served them whole and checked them. A full GET of that same
// version is streamed without hashing again; any other version (the object was replaced
// or altered behind the registry's back, or was written by someone else) is hashed as it
// is served. It is safe for concurrent use.
type verifiedSet struct {
	mu  sync.Mutex
	m   map[digest.Digest]string
	max int
}

func newVerifiedSet(max int) *verifiedSet {
	return &verifiedSet{m: map[digest.Digest]string{}, max: max}
}

// has reports whether version of blob d is known to hash to d. An empty version (the
// backend reports none) is never known.
func (v *verifiedSet) has(d digest.Digest, version string) bool {
	if version == "" {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[d] == version
}

// add records that version of blob d hashes to d. When the set is full an arbitrary entry
// is forgotten (that blob is simply hashed again on its next full read).
func (v *verifiedSet) add(d digest.Digest, version string) {
	if version == "" || v.max <= 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.m[d]; !ok && len(v.m) >= v.max {
		for k := range v.m {
			delete(v.m, k)
			break
		}
	}
	v.m[d] = version
}

// noteWritten records the version now stored at d's content address, which this process
// has just written from bytes it verified: version when the commit reported it, else
// what a Stat says. A failed Stat only means the next read hashes.
func (r *Registry) noteWritten(ctx context.Context, d digest.Digest, version string) {
	if version == "" {
		fi, err := r.d.Stat(ctx, blobDataPath(d))
		if err != nil {
			return
		}
		version = fi.Version
	}
	r.verified.add(d, version)
}

package storage

// Completing an upload: the named steps that make an upload's bytes a blob of a
// repository. A blob sent whole in one request (POST ?digest=, or a PUT carrying all of
// an upload's bytes) and a chunked upload (PATCH… then PUT) go through the same steps;
// only begin differs:
//
//	begin   beginWhole / beginChunked: look the blob up, open or resume a driver session
//	append  appendLast: stream the request's body (the last chunk) into the session and the hash
//	verify  verify: compare the bytes with the digest the client declared
//	place   place: put the verified bytes at the blob's content address
//	link    link: write the repository's layer link, remove the upload's objects
//
// Each step's doc comment states the crash-safety rule it keeps. Together they make sure
// that nothing is visible at a content address before it is verified, that a link never
// points at a content address without data, and that until the link is written a client
// retrying its PUT finds its upload (finishCommitted serves a retry whose session an
// earlier PUT already ended).

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	regerr "github.com/registryd/registryd/errors"
)

// completion is one blob being completed, carried from step to step.
type completion struct {
	repo   string
	want   digest.Digest
	upload *Upload // the upload the request finishes; nil for PutBlob

	// stored is the Stat of want's content address, started by begin.
	stored *pending[driver.Info]
	// w is the session the bytes go to: at the upload's path (a chunked upload) or at
	// want's content address (a whole blob); nil when begin found the blob stored already
	// (a whole blob is then only hashed) or once verify has committed it.
	w    driver.Writer
	from string // the path w writes
	// h hashes the bytes with alg: sha256 resumed from the upload's token for a chunked
	// upload, want's algorithm for a whole blob.
	h   hash.Hash
	alg digest.Algorithm
	// whole is set when the request carries the whole blob (w is this request's own).
	whole bool
	// committed is set when the bytes lie committed at from (not at the content address).
	committed bool
	// existed is set by place when the blob was stored before this upload, so nothing was
	// written there: link then leaves a push marker (see linkBlob).
	existed bool
	size    int64 // the blob's size, known once appendLast has run
}

// PutBlob stores a whole blob sent in one request whose digest the client declared up
// front (POST ?digest=) and links it into repo: the body streams straight to the blob's
// content address, committed only once it hashes to want, so no server-side copy is
// needed. When the blob is already stored the body is hashed and not written. A digest
// mismatch is DIGEST_INVALID and leaves the store untouched; so does a failure of the
// client or the backend while streaming.
func (r *Registry) PutBlob(ctx context.Context, repo string, body io.Reader, want digest.Digest) (BlobInfo, error) {
	c, err := r.beginWhole(ctx, repo, want, nil)
	if err != nil {
		return BlobInfo{}, err
	}
	return r.complete(ctx, c, body)
}

// FinishUpload appends the optional last chunk, verifies the content against want, and
// makes the blob part of the repository: the bytes are placed at their content address
// (the driver session committed there, or discarded when the blob already exists), the
// repository link is written and the upload's objects are removed. A digest mismatch
// discards the upload (400 DIGEST_INVALID); nothing becomes visible before the digest is
// verified. An upload still at offset 0 whose PUT carries the whole blob is completed as
// PutBlob completes a blob: the body streams straight to the content address. A token
// behind the upload is served as AppendUpload serves it (except that a PUT carrying the
// whole blob with the upload's first token is completed as a whole blob).
func (r *Registry) FinishUpload(ctx context.Context, u *Upload, start int64, body io.Reader, want digest.Digest) (BlobInfo, error) {
	if start >= 0 && start != u.Offset {
		if err := r.catchUp(ctx, u, start); err != nil {
			return BlobInfo{}, err
		}
	}
	var c *completion
	var err error
	if u.Offset == 0 {
		// The upload's empty session holds no data; link removes its objects.
		c, err = r.beginWhole(ctx, u.Repo, want, u)
	} else {
		c, body, err = r.beginChunked(ctx, u, body, want)
		if regerr.Of(err, regerr.BlobUploadUnknown) {
			if b, ok, ferr := r.finishCommitted(ctx, u, want); ferr != nil || ok {
				return b, ferr
			}
		}
	}
	if err != nil {
		return BlobInfo{}, err
	}
	return r.complete(ctx, c, body)
}

// complete runs the steps that follow begin: append body, verify, place, link.
func (r *Registry) complete(ctx context.Context, c *completion, body io.Reader) (BlobInfo, error) {
	if err := r.appendLast(ctx, c, body); err != nil {
		return BlobInfo{}, err
	}
	if err := r.verify(ctx, c); err != nil {
		return BlobInfo{}, err
	}
	if err := r.place(ctx, c); err != nil {
		return BlobInfo{}, err
	}
	return r.link(ctx, c)
}

// beginWhole begins completing blob want of repo from a request whose body is the whole
// blob; u, when not nil, is the (empty) upload the request finishes. want's content
// address is looked up while u's marker is (a finished or cancelled upload is
// BLOB_UPLOAD_UNKNOWN before any byte is read); when the blob is not stored yet, a driver
// session is opened at the content address itself.
//
// Crash safety: nothing is written; a new session is invisible until place commits it.
func (r *Registry) beginWhole(ctx context.Context, repo string, want digest.Digest, u *Upload) (*completion, error) {
	c := &completion{repo: repo, want: want, upload: u, from: blobDataPath(want),
		h: want.Algorithm().Hash(), alg: want.Algorithm(), whole: true}
	c.stored = r.statInBackground(ctx, c.from)
	if u != nil {
		if _, err := r.d.Stat(ctx, uploadStartedPath(u.Repo, u.ID)); err != nil {
			return nil, notFound(err, regerr.BlobUploadUnknown, map[string]string{"upload": u.ID}, "stat upload")
		}
	}
	_, err := c.stored.Wait()
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, driver.ErrNotFound) {
		return nil, fmt.Errorf("stat blob: %w", err)
	}
	if c.w, err = r.d.Writer(ctx, c.from, nil); err != nil {
		return nil, fmt.Errorf("start blob writer: %w", err)
	}
	return c, nil
}

// beginChunked begins completing upload u, which holds bytes already: its driver session
// and hash are resumed (see resume: of a replayed chunk, the bytes the upload holds
// already are skipped, and the body returned is what remains to append) while want's
// content address is looked up. An upload whose session is gone is BLOB_UPLOAD_UNKNOWN.
//
// Crash safety: nothing is written; the session stays as the last PATCH left it.
func (r *Registry) beginChunked(ctx context.Context, u *Upload, body io.Reader, want digest.Digest) (*completion, io.Reader, error) {
	c := &completion{repo: u.Repo, want: want, upload: u, from: uploadDataPath(u.Repo, u.ID), alg: digest.SHA256}
	c.stored = r.statInBackground(ctx, blobDataPath(want))
	var err error
	if c.w, c.h, body, err = r.resume(ctx, u, body, true); err != nil {
		return nil, nil, err
	}
	return c, body, nil
}

// appendLast streams body (nil: no bytes) into the session (or only the hash, when there
// is no session) and records the blob's size.
//
// Crash safety: the bytes go to the uncommitted session only. When the request fails here
// (the client went away, the backend failed) a chunked upload keeps its session, so the
// client may retry the PUT with the same token; a whole blob's session is aborted.
func (r *Registry) appendLast(ctx context.Context, c *completion, body io.Reader) error {
	var dst io.Writer = struct{ io.Writer }{io.Discard} // not io.Discard's small-buffer ReadFrom
	if c.w != nil {
		dst = c.w
	}
	var n int64
	if body != nil {
		// The hash reads what the session reads: a writer that implements io.ReaderFrom
		// fills its part buffers from body directly.
		var err error
		if n, err = io.CopyBuffer(dst, io.TeeReader(body, c.h), make([]byte, 256<<10)); err != nil {
			if c.whole && c.w != nil {
				_ = c.w.Abort(context.WithoutCancel(ctx))
			}
			return fmt.Errorf("write blob: %w", err)
		}
	}
	c.size = n
	if c.w != nil {
		c.size = c.w.Size()
	}
	return nil
}

// verify compares the bytes with want: with the streamed hash when it computes want's
// algorithm; otherwise (an upload's hash is sha256) by committing the session where it
// is, at the upload's path, and reading it back. A mismatch is DIGEST_INVALID: the session
// is discarded and so is the upload.
//
// Crash safety: nothing has reached the content address before this step passes. A
// session committed here lies at the upload's path, not visible as a blob.
func (r *Registry) verify(ctx context.Context, c *completion) error {
	var got digest.Digest
	if c.alg == c.want.Algorithm() {
		got = digest.NewDigest(c.alg, c.h)
	} else {
		if err := c.w.Commit(ctx); err != nil {
			return fmt.Errorf("commit upload: %w", err)
		}
		c.w, c.committed = nil, true
		var err error
		if got, err = r.hashObject(ctx, c.from, c.want.Algorithm()); err != nil {
			r.cleanupUpload(ctx, c.upload)
			return err
		}
	}
	if got == c.want {
		return nil
	}
	if c.w != nil {
		_ = c.w.Abort(context.WithoutCancel(ctx))
	}
	if c.upload != nil {
		r.cleanupUpload(ctx, c.upload)
	}
	return regerr.DigestInvalid.WithDetail(map[string]string{"digest": c.want.String(), "computed": got.String()})
}

// place puts the verified bytes at want's content address: the session is committed there
// (drivers that can commit a session at another path do; the others commit it at its own
// and copy it), or bytes verify committed at the upload's path are copied there. When a
// blob of the same size is stored there already, the session is discarded and the stored
// blob left as it is (a whole blob found stored by begin was only hashed: its size must
// match).
//
// Crash safety: the content address only ever receives verified bytes, in one commit or
// one server-side copy, so a reader finds the whole blob or none. The upload's marker
// stays until link: a retried PUT after a failure here or in link finds the bytes at the
// upload's path or at the content address (finishCommitted) and places and links them
// again; both steps are idempotent.
func (r *Registry) place(ctx context.Context, c *completion) error {
	dst := blobDataPath(c.want)
	if c.committed {
		var err error
		c.existed, err = r.copyToContentAddress(ctx, c.from, c.want, c.size)
		return err
	}
	fi, err := c.stored.Wait()
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		return fmt.Errorf("stat blob: %w", err)
	}
	if c.w == nil {
		if fi.Size != c.size {
			return fmt.Errorf("stored blob %s holds %d bytes, its content has %d", c.want, fi.Size, c.size)
		}
		c.existed = true
		return nil
	}
	if err == nil && fi.Size == c.size {
		if err := c.w.Abort(ctx); err != nil {
			return fmt.Errorf("discard upload of a stored blob: %w", err)
		}
		c.existed = true
		return nil
	}
	version, err := driver.CommitTo(ctx, r.d, c.w, c.from, dst)
	if err != nil {
		// A concurrent upload of the same content may have committed first (on Azure that
		// discards this session's blocks): the blob is there all the same.
		if fi, serr := r.d.Stat(ctx, dst); serr == nil && fi.Size == c.size {
			return nil
		}
		return fmt.Errorf("commit blob: %w", err)
	}
	r.noteWritten(ctx, c.want, version)
	return nil
}

// link writes the repository's link to the blob (with a push marker when the blob existed
// before, see linkBlob) and removes the upload's objects (best effort: leftovers are
// harmless).
//
// Crash safety: the link is written only once the blob is at its content address, so it
// never points at missing bytes; the upload's objects, its marker among them, go last, so
// a PUT retried after a failure here still finds its upload.
func (r *Registry) link(ctx context.Context, c *completion) (BlobInfo, error) {
	if err := r.linkBlob(ctx, c.repo, c.want, c.existed); err != nil {
		return BlobInfo{}, err
	}
	if c.upload != nil {
		r.cleanupUpload(ctx, c.upload)
	}
	return BlobInfo{Digest: c.want, Size: c.size}, nil
}

// finishCommitted completes upload u whose earlier PUT ended the backend session and then
// failed in place or link: the upload's marker is still there, its session is not. Its
// bytes lie committed at the upload's path (then, if they hash to want, place and link run
// again) or at want's content address (then link does), so the client's retried PUT
// succeeds instead of finding its upload unknown. ok is false when there is no such
// committed upload (the caller's BLOB_UPLOAD_UNKNOWN stands).
func (r *Registry) finishCommitted(ctx context.Context, u *Upload, want digest.Digest) (b BlobInfo, ok bool, err error) {
	if _, err := r.d.Stat(ctx, uploadStartedPath(u.Repo, u.ID)); err != nil {
		if errors.Is(err, driver.ErrNotFound) {
			return BlobInfo{}, false, nil
		}
		return BlobInfo{}, false, fmt.Errorf("stat upload: %w", err)
	}
	c := &completion{repo: u.Repo, want: want, upload: u, from: uploadDataPath(u.Repo, u.ID), committed: true}
	fi, err := r.d.Stat(ctx, c.from)
	if errors.Is(err, driver.ErrNotFound) {
		// The earlier PUT committed the session straight at want's content address (or
		// discarded it, want being stored already).
		fi, err := r.d.Stat(ctx, blobDataPath(want))
		if errors.Is(err, driver.ErrNotFound) {
			return BlobInfo{}, false, nil
		}
		if err != nil {
			return BlobInfo{}, false, fmt.Errorf("stat blob: %w", err)
		}
		c.size, c.existed = fi.Size, true
		b, err := r.link(ctx, c)
		return b, err == nil, err
	}
	if err != nil {
		return BlobInfo{}, false, fmt.Errorf("stat committed upload: %w", err)
	}
	c.size = fi.Size
	got, err := r.hashObject(ctx, c.from, want.Algorithm())
	if err != nil {
		return BlobInfo{}, false, err
	}
	if got != want {
		return BlobInfo{}, false, nil
	}
	if err := r.place(ctx, c); err != nil {
		return BlobInfo{}, false, err
	}
	b, err = r.link(ctx, c)
	return b, err == nil, err
}

// copyToContentAddress copies the committed bytes at from to d's content address, unless
// a blob of the same size is there already (existed).
func (r *Registry) copyToContentAddress(ctx context.Context, from string, d digest.Digest, size int64) (existed bool, err error) {
	fi, err := r.d.Stat(ctx, blobDataPath(d))
	if err == nil && fi.Size == size {
		return true, nil
	}
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		return false, fmt.Errorf("stat blob: %w", err)
	}
	if err := r.d.Copy(ctx, from, blobDataPath(d)); err != nil {
		return false, fmt.Errorf("move upload to content address: %w", err)
	}
	r.noteWritten(ctx, d, "")
	return false, nil
}

// hashObject reads the object at p back and returns its digest with alg.
func (r *Registry) hashObject(ctx context.Context, p string, alg digest.Algorithm) (digest.Digest, error) {
	rc, err := r.d.Reader(ctx, p, 0, -1)
	if err != nil {
		return "", fmt.Errorf("read back upload: %w", err)
	}
	defer rc.Close()
	v := alg.Digester()
	if _, err := io.CopyBuffer(v.Hash(), rc, make([]byte, 256<<10)); err != nil {
		return "", fmt.Errorf("read back upload: %w", err)
	}
	return v.Digest(), nil
}

package storage

import (
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	regerr "github.com/registryd/registryd/errors"
)

// StartUpload begins a resumable upload in repo and returns its state. The driver session
// is created and its empty state recorded, so the first PATCH may land on any replica.
func (r *Registry) StartUpload(ctx context.Context, repo string) (*Upload, error) {
	u := &Upload{Repo: repo, ID: newUploadID(), Started: time.Now()}
	started := u.Started.UTC().Format(time.RFC3339Nano)
	if err := r.d.Put(ctx, uploadStartedPath(repo, u.ID), strings.NewReader(started), int64(len(started))); err != nil {
		return nil, fmt.Errorf("start upload: %w", err)
	}
	w, err := r.d.Writer(ctx, uploadDataPath(repo, u.ID), nil)
	if err != nil {
		r.cleanupUpload(ctx, u)
		return nil, fmt.Errorf("start upload writer: %w", err)
	}
	if u.state, err = w.State(ctx); err != nil {
		r.cleanupUpload(ctx, u)
		return nil, fmt.Errorf("start upload state: %w", err)
	}
	u.hash, err = marshalHash(sha256.New())
	if err != nil {
		return nil, err
	}
	return u, nil
}

func marshalHash(h hash.Hash) ([]byte, error) {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return nil, errors.New("hash state not serializable")
	}
	return m.MarshalBinary()
}

func (r *Registry) rangeError(u *Upload) *regerr.Error {
	return regerr.BlobUploadOutOfOrder.WithDetail(map[string]any{"offset": u.Offset}).
		WithHeader("Range", rangeHeader(u.Offset)).
		WithHeader("Docker-Upload-UUID", u.ID)
}

// rangeHeader is the Range header value for an upload holding n bytes ("0-(n-1)").
func rangeHeader(n int64) string {
	if n == 0 {
		return "0-0"
	}
	return "0-" + strconv.FormatInt(n-1, 10)
}

// RangeHeader is the Range header value describing the bytes an upload holds.
func (u *Upload) RangeHeader() string { return rangeHeader(u.Offset) }

// open resumes the driver writer and hash of an upload. The upload's marker must exist:
// a cancelled or finished upload is BLOB_UPLOAD_UNKNOWN even before the first byte.
func (r *Registry) open(ctx context.Context, u *Upload) (driver.Writer, hash.Hash, error) {
	detail := map[string]string{"upload": u.ID}
	if _, err := r.d.Stat(ctx, uploadStartedPath(u.Repo, u.ID)); err != nil {
		return nil, nil, notFound(err, regerr.BlobUploadUnknown, detail, "stat upload")
	}
	w, err := r.d.Writer(ctx, uploadDataPath(u.Repo, u.ID), u.state)
	if errors.Is(err, driver.ErrPreconditionFailed) {
		// A replayed or stale token: the backend has moved on. Nothing was changed.
		return nil, nil, r.rangeError(u).WithCause(err)
	}
	if err != nil {
		return nil, nil, notFound(err, regerr.BlobUploadUnknown, detail, "resume upload")
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.hash); err != nil {
		_ = w.Abort(ctx)
		return nil, nil, regerr.BlobUploadInvalid.WithDetail(detail).WithCause(err)
	}
	if w.Size() != u.Offset {
		return nil, nil, r.rangeError(u).WithCause(fmt.Errorf("writer holds %d bytes, token says %d", w.Size(), u.Offset))
	}
	return w, h, nil
}

// AppendUpload streams body into the upload and, on success, advances u to the new
// acknowledged state, which it also records in the backend (see acked.go). start is the
// offset the client says the chunk begins at (-1 when it sent no Content-Range).
//
// A token behind the upload (replayed after a later chunk was acknowledged, its response
// lost) continues from the upload's recorded state: a chunk that begins there is
// appended, and a chunk that begins at the token's offset and repeats the acknowledged
// bytes has them skipped. Any other chunk that does not begin at the upload's offset is
// refused with 416 and the upload's true Range, and u is set to the upload's recorded
// state when it is ahead (so a Location made from u continues from there). On any other
// failure (client gone, backend error) u is unchanged and still valid: the backend
// discards the unacknowledged bytes when the client retries with it.
func (r *Registry) AppendUpload(ctx context.Context, u *Upload, start int64, body io.Reader) error {
	if start >= 0 && start != u.Offset {
		if err := r.catchUp(ctx, u, start); err != nil {
			return err
		}
	}
	w, h, body, err := r.resume(ctx, u, body, false)
	if err != nil || w == nil {
		return err
	}
	if _, err := copyChunk(w, h, body); err != nil {
		return err
	}
	state, err := w.State(ctx)
	if err != nil {
		return fmt.Errorf("save upload state: %w", err)
	}
	hs, err := marshalHash(h)
	if err != nil {
		return err
	}
	u.Offset, u.state, u.hash = w.Size(), state, hs
	r.recordAcked(ctx, u)
	return nil
}

// copyChunk copies body into w and h with a bounded buffer.
func copyChunk(w driver.Writer, h hash.Hash, body io.Reader) (int64, error) {
	if body == nil {
		return 0, nil
	}
	// The hash reads what the writer reads: a writer that implements io.ReaderFrom fills
	// its part buffers from body directly.
	n, err := io.CopyBuffer(w, io.TeeReader(body, h), make([]byte, 256<<10))
	if err != nil {
		return n, fmt.Errorf("write upload chunk: %w", err)
	}
	return n, nil
}

// FinishUpload appends the optional last chunk, verifies the content against want, and
// makes the blob part of the repository: the driver session is committed, the bytes are
// moved to their content address with a server-side copy (skipped when the blob already
// exists), the repository link is written and the upload's objects are removed. A digest
// mismatch discards the upload (400 DIGEST_INVALID); nothing becomes visible before the
// digest is verified. An upload still at offset 0 whose PUT carries the whole blob takes
// the shorter path of PutBlob: the body streams straight to the content address, no copy.
// A token behind the upload is served as AppendUpload serves it (except that a PUT
// carrying the whole blob with the upload's first token takes that shorter path).
func (r *Registry) FinishUpload(ctx context.Context, u *Upload, start int64, body io.Reader, want digest.Digest) (BlobInfo, error) {
	if start >= 0 && start != u.Offset {
		if err := r.catchUp(ctx, u, start); err != nil {
			return BlobInfo{}, err
		}
	}
	if u.Offset == 0 {
		// The whole blob is in this request: store it straight at its content address.
		// The upload's empty session holds no data; its objects are removed afterwards.
		// The upload's marker is looked up while the blob is, before the body is read.
		marker := r.statAsync(ctx, uploadStartedPath(u.Repo, u.ID))
		known := func() error {
			if _, err := marker(); err != nil {
				return notFound(err, regerr.BlobUploadUnknown, map[string]string{"upload": u.ID}, "stat upload")
			}
			return nil
		}
		b, stored, err := r.storeVerified(ctx, body, want, known)
		if regerr.Of(err, regerr.DigestInvalid) {
			r.cleanupUpload(ctx, u)
		}
		if err != nil {
			return BlobInfo{}, err
		}
		if err := r.linkBlob(ctx, u.Repo, want, stored); err != nil {
			return BlobInfo{}, err
		}
		r.cleanupUpload(ctx, u)
		return b, nil
	}
	// Whether the blob is stored already is looked up while the session is resumed.
	stored := r.statAsync(ctx, blobDataPath(want))
	w, h, body, err := r.resume(ctx, u, body, true)
	if regerr.Of(err, regerr.BlobUploadUnknown) {
		if b, ok, ferr := r.finishCommitted(ctx, u, want); ferr != nil || ok {
			return b, ferr
		}
	}
	if err != nil {
		return BlobInfo{}, err
	}
	return r.finish(ctx, u, w, h, body, want, stored)
}

// statAsync starts a Stat of p and returns a function that waits for its outcome (and
// may be called any number of times). A panic in the driver comes back as the error.
func (r *Registry) statAsync(ctx context.Context, p string) func() (driver.Info, error) {
	var fi driver.Info
	done := async("stat "+p, func() (err error) {
		fi, err = r.d.Stat(ctx, p)
		return err
	})
	return sync.OnceValues(func() (driver.Info, error) {
		err := <-done
		return fi, err
	})
}

// finishCommitted completes an upload whose earlier PUT ended the backend session and
// then failed (a backend fault while moving or linking the blob): the upload's marker is
// still there, its session is not. Its bytes lie committed at the upload path (then, if
// they hash to want, steps 3 to 5 of finish run again; they are idempotent) or at want's
// content address (then steps 4 and 5 do), so the client's retried PUT succeeds instead of
// finding its upload unknown. ok is false when there is no such committed upload (the
// caller's BLOB_UPLOAD_UNKNOWN stands).
func (r *Registry) finishCommitted(ctx context.Context, u *Upload, want digest.Digest) (b BlobInfo, ok bool, err error) {
	if _, err := r.d.Stat(ctx, uploadStartedPath(u.Repo, u.ID)); err != nil {
		if errors.Is(err, driver.ErrNotFound) {
			return BlobInfo{}, false, nil
		}
		return BlobInfo{}, false, fmt.Errorf("stat upload: %w", err)
	}
	fi, err := r.d.Stat(ctx, uploadDataPath(u.Repo, u.ID))
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
		b, err := r.linkUpload(ctx, u, want, fi.Size, true)
		return b, err == nil, err
	}
	if err != nil {
		return BlobInfo{}, false, fmt.Errorf("stat committed upload: %w", err)
	}
	got, err := r.hashObject(ctx, uploadDataPath(u.Repo, u.ID), want.Algorithm())
	if err != nil {
		return BlobInfo{}, false, err
	}
	if got != want {
		return BlobInfo{}, false, nil
	}
	stored, err := r.moveToContentAddress(ctx, u, want, fi.Size)
	if err != nil {
		return BlobInfo{}, false, err
	}
	b, err = r.linkUpload(ctx, u, want, fi.Size, stored)
	return b, err == nil, err
}

// PutBlob stores a whole blob sent in one request whose digest the client declared up
// front (POST ?digest=) and links it into repo. See storeVerified.
func (r *Registry) PutBlob(ctx context.Context, repo string, body io.Reader, want digest.Digest) (BlobInfo, error) {
	b, stored, err := r.storeVerified(ctx, body, want, nil)
	if err != nil {
		return BlobInfo{}, err
	}
	if err := r.linkBlob(ctx, repo, want, stored); err != nil {
		return BlobInfo{}, err
	}
	return b, nil
}

// storeVerified streams body, which the client says is the whole blob want, straight to
// want's content address: a driver writer at the blob's path, committed only once the
// bytes hash to want, so nothing is visible before it is verified and no server-side copy
// is needed. When the blob is already stored the body is hashed and not written. A digest
// mismatch is DIGEST_INVALID and leaves the store untouched; so does a failure of the
// client or the backend while streaming (the writer is aborted). known, when not nil, is
// waited for (while the blob is looked up) before the body is read: its error is returned
// as it is. stored reports that the blob was stored already (nothing was written).
func (r *Registry) storeVerified(ctx context.Context, body io.Reader, want digest.Digest, known func() error) (b BlobInfo, stored bool, err error) {
	p := blobDataPath(want)
	stat := r.statAsync(ctx, p)
	if known != nil {
		if err := known(); err != nil {
			return BlobInfo{}, false, err
		}
	}
	fi, err := stat()
	exists := err == nil
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		return BlobInfo{}, false, fmt.Errorf("stat blob: %w", err)
	}
	v := want.Algorithm().Digester()
	var dst io.Writer = struct{ io.Writer }{io.Discard} // not io.Discard's small-buffer ReadFrom
	var w driver.Writer
	if !exists {
		if w, err = r.d.Writer(ctx, p, nil); err != nil {
			return BlobInfo{}, false, fmt.Errorf("start blob writer: %w", err)
		}
		dst = w
	}
	abort := func() {
		if w != nil {
			_ = w.Abort(context.WithoutCancel(ctx))
		}
	}
	var n int64
	if body != nil {
		if n, err = io.CopyBuffer(dst, io.TeeReader(body, v.Hash()), make([]byte, 256<<10)); err != nil {
			abort()
			return BlobInfo{}, false, fmt.Errorf("write blob: %w", err)
		}
	}
	if got := v.Digest(); got != want {
		abort()
		return BlobInfo{}, false, regerr.DigestInvalid.WithDetail(map[string]string{"digest": want.String(), "computed": got.String()})
	}
	if exists {
		if fi.Size != n {
			return BlobInfo{}, false, fmt.Errorf("stored blob %s holds %d bytes, its content has %d", want, fi.Size, n)
		}
		return BlobInfo{Digest: want, Size: n}, true, nil
	}
	version, err := driver.CommitTo(ctx, r.d, w, p, p)
	if err != nil {
		// A concurrent upload of the same content may have committed first (on Azure that
		// discards this session's blocks): the blob is there all the same.
		if fi, serr := r.d.Stat(ctx, p); serr == nil && fi.Size == n {
			return BlobInfo{Digest: want, Size: n}, false, nil
		}
		return BlobInfo{}, false, fmt.Errorf("commit blob: %w", err)
	}
	r.noteWritten(ctx, want, version)
	return BlobInfo{Digest: want, Size: n}, false, nil
}

func (r *Registry) finish(ctx context.Context, u *Upload, w driver.Writer, h hash.Hash, body io.Reader, want digest.Digest,
	stored func() (driver.Info, error)) (BlobInfo, error) {
	if _, err := copyChunk(w, h, body); err != nil {
		// Keep the session: the client may retry the PUT with the same token.
		return BlobInfo{}, err
	}
	size := w.Size()
	if want.Algorithm() == digest.SHA256 {
		// Step 1, validate with the streamed hash.
		if got := digest.NewDigest(digest.SHA256, h); got != want {
			_ = w.Abort(ctx)
			r.cleanupUpload(ctx, u)
			return BlobInfo{}, regerr.DigestInvalid.WithDetail(map[string]string{"digest": want.String(), "computed": got.String()})
		}
		// Steps 2 and 3 in one: the verified session is committed straight at its content
		// address (drivers that can put or compose it there; the others commit and copy),
		// or discarded when an identical blob is already there.
		existed, err := r.commitToContentAddress(ctx, u, w, want, size, stored)
		if err != nil {
			return BlobInfo{}, err
		}
		return r.linkUpload(ctx, u, want, size, existed)
	}
	// Other algorithms: step 2, commit the backend session at the upload path; step 1,
	// validate by reading the uploaded bytes back.
	if err := w.Commit(ctx); err != nil {
		return BlobInfo{}, fmt.Errorf("commit upload: %w", err)
	}
	got, err := r.hashObject(ctx, uploadDataPath(u.Repo, u.ID), want.Algorithm())
	if err != nil {
		r.cleanupUpload(ctx, u)
		return BlobInfo{}, err
	}
	if got != want {
		r.cleanupUpload(ctx, u)
		return BlobInfo{}, regerr.DigestInvalid.WithDetail(map[string]string{"digest": want.String(), "computed": got.String()})
	}
	// Step 3, move to the content address unless an identical blob is already there.
	existed, err := r.moveToContentAddress(ctx, u, want, size)
	if err != nil {
		return BlobInfo{}, err
	}
	return r.linkUpload(ctx, u, want, size, existed)
}

// linkUpload runs the last steps of a finished upload whose blob is at its content
// address: step 4 links it into the repository, step 5 removes the upload's objects
// (best effort: leftovers are harmless). stored says the blob was stored before the
// upload (see linkBlob).
func (r *Registry) linkUpload(ctx context.Context, u *Upload, want digest.Digest, size int64, stored bool) (BlobInfo, error) {
	if err := r.linkBlob(ctx, u.Repo, want, stored); err != nil {
		return BlobInfo{}, err
	}
	r.cleanupUpload(ctx, u)
	return BlobInfo{Digest: want, Size: size}, nil
}

// commitToContentAddress ends the verified session w of upload u: discarded when the
// blob d is already stored with the same size (stored is the outcome of a Stat of d's
// content address, started when the request began), else committed at d's content
// address. existed reports the first case.
func (r *Registry) commitToContentAddress(ctx context.Context, u *Upload, w driver.Writer, d digest.Digest, size int64,
	stored func() (driver.Info, error)) (existed bool, err error) {
	fi, err := stored()
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		return false, fmt.Errorf("stat blob: %w", err)
	}
	if err == nil && fi.Size == size {
		if err := w.Abort(ctx); err != nil {
			return false, fmt.Errorf("discard upload of a stored blob: %w", err)
		}
		return true, nil
	}
	version, err := driver.CommitTo(ctx, r.d, w, uploadDataPath(u.Repo, u.ID), blobDataPath(d))
	if err != nil {
		return false, fmt.Errorf("commit upload to content address: %w", err)
	}
	r.noteWritten(ctx, d, version)
	return false, nil
}

// moveToContentAddress copies the committed upload to d's content address unless an
// identical blob is there already (existed).
func (r *Registry) moveToContentAddress(ctx context.Context, u *Upload, d digest.Digest, size int64) (existed bool, err error) {
	fi, err := r.d.Stat(ctx, blobDataPath(d))
	if err == nil && fi.Size == size {
		return true, nil
	}
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		return false, fmt.Errorf("stat blob: %w", err)
	}
	if err := r.d.Copy(ctx, uploadDataPath(u.Repo, u.ID), blobDataPath(d)); err != nil {
		return false, fmt.Errorf("move upload to content address: %w", err)
	}
	r.noteWritten(ctx, d, "")
	return false, nil
}

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

// cleanupUpload removes an upload's objects, logging (not returning) failures.
func (r *Registry) cleanupUpload(ctx context.Context, u *Upload) {
	err := r.d.Delete(context.WithoutCancel(ctx), uploadDir(u.Repo, u.ID))
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		r.opts.Logger.WarnContext(ctx, "upload clean-up failed", "repository", u.Repo, "upload_id", u.ID, "error", err)
	}
}

// UploadStatus checks that the upload still exists. When the upload's recorded
// acknowledged state is ahead of u (a token replayed after a later chunk was
// acknowledged, its response lost), u is set to it, so the caller answers the upload's
// true Range and a Location continuing from there; otherwise u is unchanged.
func (r *Registry) UploadStatus(ctx context.Context, u *Upload) error {
	// The record is read while the marker is looked up.
	var cur *Upload
	done := async("read upload record", func() (err error) {
		cur, err = r.acknowledged(ctx, u)
		return err
	})
	_, err := r.d.Stat(ctx, uploadStartedPath(u.Repo, u.ID))
	aerr := <-done
	if err != nil {
		return notFound(err, regerr.BlobUploadUnknown, map[string]string{"upload": u.ID}, "stat upload")
	}
	if aerr != nil {
		return aerr
	}
	if cur != nil {
		*u = *cur
	}
	return nil
}

// CancelUpload aborts the upload and removes its objects; afterwards every request with
// its token answers BLOB_UPLOAD_UNKNOWN.
func (r *Registry) CancelUpload(ctx context.Context, u *Upload) error {
	if err := r.UploadStatus(ctx, u); err != nil {
		return err
	}
	// Remove the marker first: from here on the upload is unknown to every replica.
	if err := r.d.Delete(ctx, uploadStartedPath(u.Repo, u.ID)); err != nil && !errors.Is(err, driver.ErrNotFound) {
		return fmt.Errorf("cancel upload: %w", err)
	}
	if w, err := r.d.Writer(ctx, uploadDataPath(u.Repo, u.ID), u.state); err == nil {
		if err := w.Abort(ctx); err != nil {
			r.opts.Logger.WarnContext(ctx, "upload abort failed", "repository", u.Repo, "upload_id", u.ID, "error", err)
		}
	}
	r.cleanupUpload(ctx, u)
	return nil
}

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
	"time"

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
	rec := inBackground("read upload record", func() (*Upload, error) { return r.acknowledged(ctx, u) })
	_, err := r.d.Stat(ctx, uploadStartedPath(u.Repo, u.ID))
	cur, aerr := rec.Wait()
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

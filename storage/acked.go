package storage

// The acknowledged-state record: how a replayed upload token resumes.
//
// A token carries the hash state and the driver's resume state of the bytes an upload held
// when it was issued. When the response carrying a new token is lost (a proxy dropped it,
// the connection broke after the server answered), the client still holds the previous
// token, which the driver now refuses as superseded; the hash state of the acknowledged
// bytes lives in no other place. So every PATCH, once the driver has acknowledged its
// bytes and before it answers, also writes what its new token carries (offset, hash state,
// driver state) to one small object beside the upload's data (uploadAckedPath), replacing
// the previous one: the record stays bounded and goes with the upload's directory at
// commit, cancel and purge. A request whose token is behind the record is then answered
// from the record, on any replica: a status GET and a 416 carry the record's Range and a
// Location with a token continuing from it, and a replayed chunk that holds exactly the
// bytes the record acknowledged (its hash, resumed from the token's state over the resent
// bytes, equals the record's) is accepted, the overlap skipped.
//
// The record is written after the driver's State; a PATCH that fails between the two
// leaves a record behind the backend. The driver's own record of the session decides
// whether a state is current: a token made from a record the backend has moved past is
// refused like any stale token, with the record's Range.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/registryd/registryd/driver"
	regerr "github.com/registryd/registryd/errors"
)

// ackedVersion is the first byte of an encoded record.
const ackedVersion = 1

// maxAckedSize bounds a record read back: an offset, a sha256 state and a driver state.
const maxAckedSize = 4 << 10

// encodeAcked returns the record of u's acknowledged state.
func encodeAcked(u *Upload) []byte {
	b := []byte{ackedVersion}
	b = binary.AppendVarint(b, u.Offset)
	b = appendBytes(b, u.hash)
	return appendBytes(b, u.state)
}

var errBadAcked = errors.New("malformed acknowledged-state record")

// decodeAcked returns u advanced to the state record b describes.
func decodeAcked(u *Upload, b []byte) (*Upload, error) {
	if len(b) == 0 || b[0] != ackedVersion {
		return nil, errBadAcked
	}
	cur := *u
	var ok bool
	p := b[1:]
	if cur.Offset, p, ok = readVarint(p); !ok || cur.Offset < 0 {
		return nil, errBadAcked
	}
	if cur.hash, p, ok = readBytes(p); !ok {
		return nil, errBadAcked
	}
	if cur.state, p, ok = readBytes(p); !ok || len(p) != 0 {
		return nil, errBadAcked
	}
	cur.hash, cur.state = bytes.Clone(cur.hash), bytes.Clone(cur.state)
	return &cur, nil
}

// ackedTimeout bounds the write of a record once the client is gone.
const ackedTimeout = 30 * time.Second

// recordAcked replaces the upload's acknowledged-state record with u's state. The write
// outlives a client that went away meanwhile (the client most in need of the record is
// the one that will not see this response). A failure is logged, not returned: the bytes
// are acknowledged by the driver already, and the client's new token works without the
// record (only a replay of an older one will not resume).
func (r *Registry) recordAcked(ctx context.Context, u *Upload) {
	b := encodeAcked(u)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackedTimeout)
	defer cancel()
	if err := r.d.Put(ctx, uploadAckedPath(u.Repo, u.ID), bytes.NewReader(b), int64(len(b))); err != nil {
		r.opts.Logger.WarnContext(ctx, "upload: recording the acknowledged state failed; a replay of an older token will not resume",
			"repository", u.Repo, "upload_id", u.ID, "offset", u.Offset, "error", err)
	}
}

// acknowledged returns the upload's recorded acknowledged state when it is ahead of u (u's
// token was replayed after a later chunk was acknowledged), or nil when it is not, or no
// record exists (the upload ended, or no chunk has been recorded yet).
func (r *Registry) acknowledged(ctx context.Context, u *Upload) (*Upload, error) {
	rc, err := r.d.Reader(ctx, uploadAckedPath(u.Repo, u.ID), 0, -1)
	if errors.Is(err, driver.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read upload record: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxAckedSize+1))
	if err != nil {
		return nil, fmt.Errorf("read upload record: %w", err)
	}
	if len(b) > maxAckedSize {
		return nil, fmt.Errorf("read upload record: %w", errBadAcked)
	}
	cur, err := decodeAcked(u, b)
	if err != nil {
		// Not a record this registry wrote: the token's own state stands.
		r.opts.Logger.WarnContext(ctx, "upload: unreadable acknowledged-state record", "repository", u.Repo, "upload_id", u.ID, "error", err)
		return nil, nil
	}
	if cur.Offset <= u.Offset {
		return nil, nil
	}
	return cur, nil
}

// behind is the 416 for a request whose token is behind the upload: it sets u to the
// recorded state cur (so the caller's Location continues from there) when there is one,
// and answers u's Range.
func (r *Registry) behind(u, cur *Upload, cause error) error {
	if cur != nil {
		*u = *cur
	}
	e := r.rangeError(u)
	if cause != nil {
		e = e.WithCause(cause)
	}
	return e
}

// catchUp serves a chunk that does not begin at u.Offset. When the upload's record is
// ahead of u and the chunk begins exactly there (the client learnt the upload's Range but
// kept an older token), u becomes the recorded state and nil is returned; otherwise the
// answer is 416 with the upload's true Range (u set to the record, if any).
func (r *Registry) catchUp(ctx context.Context, u *Upload, start int64) error {
	cur, err := r.acknowledged(ctx, u)
	if err != nil {
		return err
	}
	if cur != nil && cur.Offset == start {
		*u = *cur
		return nil
	}
	return r.behind(u, cur, nil)
}

// resume opens the upload's driver session and hash for a chunk that begins at u.Offset
// and returns them with the body to write. When the driver refuses u's state as
// superseded and the upload's record is ahead of u, the chunk is a replay: if its first
// bytes are exactly those the record acknowledged (the hash resumed from u's state over
// them equals the record's), they are skipped, u becomes the recorded state and the rest
// of the body is returned to be written from there; otherwise 416 with the record's Range.
// A replay with nothing after the acknowledged bytes returns no writer and no error when
// !needWriter: the upload is as the record says, and the record's state stays current
// (no new State supersedes the token of the lost response).
func (r *Registry) resume(ctx context.Context, u *Upload, body io.Reader, needWriter bool) (driver.Writer, hash.Hash, io.Reader, error) {
	w, h, err := r.open(ctx, u)
	if err == nil || !regerr.Of(err, regerr.BlobUploadOutOfOrder) {
		return w, h, body, err
	}
	cur, aerr := r.acknowledged(ctx, u)
	if aerr != nil {
		return nil, nil, nil, aerr
	}
	if cur == nil {
		return nil, nil, nil, err
	}
	if body == nil {
		return nil, nil, nil, r.behind(u, cur, err)
	}
	h = sha256.New()
	if uerr := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.hash); uerr != nil {
		return nil, nil, nil, regerr.BlobUploadInvalid.WithDetail(map[string]string{"upload": u.ID}).WithCause(uerr)
	}
	overlap := cur.Offset - u.Offset
	if n, cerr := io.CopyBuffer(h, io.LimitReader(body, overlap), make([]byte, 256<<10)); cerr != nil {
		return nil, nil, nil, fmt.Errorf("read upload chunk: %w", cerr)
	} else if n < overlap {
		return nil, nil, nil, r.behind(u, cur, err)
	}
	if got, merr := marshalHash(h); merr != nil || !bytes.Equal(got, cur.hash) {
		return nil, nil, nil, r.behind(u, cur, errors.New("replayed chunk differs from the acknowledged bytes"))
	}
	*u = *cur
	var next [1]byte
	n, rerr := io.ReadFull(body, next[:])
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		return nil, nil, nil, fmt.Errorf("read upload chunk: %w", rerr)
	}
	if n == 0 && !needWriter {
		return nil, nil, nil, nil
	}
	w, h, err = r.open(ctx, u)
	if err != nil {
		return nil, nil, nil, err
	}
	return w, h, io.MultiReader(bytes.NewReader(next[:n]), body), nil
}

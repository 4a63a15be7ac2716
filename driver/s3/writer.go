package s3

// The resumable Writer.
//
// A session is identified by a random session id chosen by the Writer that starts it. Its
// bytes live in two places in the bucket:
//
//   - full parts of one multipart upload of <path>, created lazily when the first full part
//     must be sent (a session that never exceeds one part is a single PutObject at Commit
//     and never creates a multipart upload, let alone a zero-part one);
//   - the sidecar object "<path>~<session id hex>.tail", written by State, holding the bytes
//     short of a full part and, in its user metadata, the acknowledged progress: a random
//     nonce drawn anew by every State, the part count and the size.
//
// The state handed to the caller names the session id, the upload id, the part size, the
// part count, the size, the nonce, the sidecar's ETag and the ETag of the last part (about
// 100 bytes plus the upload id). The part list stays in S3 (ListParts at Commit).
//
// Resume checks the backend against the state, and the backend wins: the sidecar must
// exist (else the session was committed, aborted or never acknowledged: ErrNotFound), and
// carry the state's nonce, part count, size and ETag (else a later State superseded this
// one: ErrPreconditionFailed); part number <parts> of the upload must exist with the
// state's ETag (NoSuchUpload: ErrNotFound; another ETag: ErrPreconditionFailed). Bytes a
// writer sent after its last State were never acknowledged: parts numbered above the
// state's count are overwritten by the resumed writer or left out of
// CompleteMultipartUpload, and the sidecar still holds the acknowledged tail. An upload
// created by a writer that ends without a State (cancelled, failed) is named by no state,
// so that writer aborts it in the background.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/parts"
)

const (
	// stateKind tags this driver's resume states (see parts.NewRecord).
	stateKind = 's'
	// sidecarSep and sidecarSuffix name a session's sidecar: <key>~<sid hex>.tail.
	sidecarSep    = "~"
	sidecarSuffix = ".tail"
	// metaSession is the sidecar's user metadata key recording the acknowledged progress.
	metaSession = "registryd-session"
	// abandonTimeout bounds the background abort of an upload no state names.
	abandonTimeout = time.Minute
)

// writerState is the decoded resume state.
type writerState struct {
	sid      [12]byte
	nonce    [8]byte
	partSize int64
	parts    int32
	size     int64
	uploadID string
	tailETag string
	lastETag string
}

// tail is the number of bytes held by the sidecar.
func (s *writerState) tail() int64 { return s.size - int64(s.parts)*s.partSize }

// sessionMeta is the sidecar metadata value recording this state's progress.
func (s *writerState) sessionMeta() string {
	return fmt.Sprintf("%x %d %d", s.nonce, s.parts, s.size)
}

func (s *writerState) marshal() []byte {
	return parts.NewRecord(stateKind).Fixed(s.sid[:]).Fixed(s.nonce[:]).
		Uint(uint64(s.partSize)).Uint(uint64(s.parts)).Uint(uint64(s.size)).
		String(s.uploadID).String(s.tailETag).String(s.lastETag).Seal()
}

// parseState decodes a state and checks its invariants; it fails with parts.ErrMalformed.
func parseState(b []byte) (*writerState, error) {
	dec, err := parts.Open(stateKind, b)
	if err != nil {
		return nil, err
	}
	var s writerState
	dec.Fixed(s.sid[:])
	dec.Fixed(s.nonce[:])
	s.partSize = dec.Int(maxChunkSize)
	s.parts = int32(dec.Int(maxParts))
	s.size = dec.Int(1 << 50)
	s.uploadID, s.tailETag, s.lastETag = dec.String(1024), dec.String(256), dec.String(256)
	tail := s.tail()
	return &s, dec.Close(s.partSize >= minChunkSize && tail >= 0 && tail < s.partSize &&
		(s.parts == 0) == (s.uploadID == "") && (s.parts == 0) == (s.lastETag == ""))
}

// writer implements driver.Writer; see the comment at the top of this file. Its bytes go
// through a parts.Pipeline; the fields below are set while resuming, by the pipeline's
// Before (serialised with the pipeline), or after the pipeline is drained.
type writer struct {
	parts.Intake // Write, ReadFrom, Size
	d            *Driver
	path         string
	key          string
	sidecar      string
	sid          [12]byte
	partSize     int64
	pipe         *parts.Pipeline

	uploadID string // "" until the first full part is sent
	created  bool   // uploadID was created by this writer and no State has named it yet
	resumed  bool   // the session's sidecar exists
	base     int32  // parts of the session before this writer
	last     int32  // 1 once the drained bytes were sent as a part
	lastETag string // ETag of part number base as of the resumed state

	mu       sync.Mutex
	uploaded map[int32]types.CompletedPart // parts uploaded by this writer
}

// Writer implements driver.Writer. Starting a session (resume == nil) makes no backend
// call. Resuming fetches the sidecar and checks it and the upload against the state (see
// the top of writer.go); a malformed state is ErrNotFound.
func (d *Driver) Writer(ctx context.Context, p string, resume []byte) (driver.Writer, error) {
	if err := driver.CheckPath(p); err != nil {
		return nil, err
	}
	if resume == nil {
		return d.newWriter(ctx, p), nil
	}
	st, err := parseState(resume)
	if err != nil {
		return nil, &driver.PathError{Op: "writer", Path: p, Err: err}
	}
	if st.partSize > d.budgetSize {
		return nil, &driver.PathError{Op: "writer", Path: p, Err: fmt.Errorf(
			"state part size %d exceeds memorybudget %d: %w", st.partSize, d.budgetSize, driver.ErrMisconfigured)}
	}
	w := d.newSession(ctx, p, st)
	if err := w.resume(ctx, st); err != nil {
		w.finish(ctx, false)
		return nil, err
	}
	return w, nil
}

// uploadSlots is how many parts of one writer upload in the background at once: the part
// being filled counts against multipartconcurrency too, so a writer holds at most
// max(2, multipartconcurrency) part buffers.
func (d *Driver) uploadSlots() int { return max(1, d.concurrency-1) }

// newWriter starts a new session at p.
func (d *Driver) newWriter(ctx context.Context, p string) *writer {
	st := &writerState{partSize: d.chunk}
	_, _ = rand.Read(st.sid[:])
	return d.newSession(ctx, p, st)
}

// newSession returns a writer of the session st names, as of st (not verified yet).
func (d *Driver) newSession(ctx context.Context, p string, st *writerState) *writer {
	key := d.key(p)
	w := &writer{
		d:        d,
		path:     p,
		key:      key,
		sidecar:  key + sidecarSep + hex.EncodeToString(st.sid[:]) + sidecarSuffix,
		sid:      st.sid,
		partSize: st.partSize,
		base:     st.parts,
		uploaded: map[int32]types.CompletedPart{},
	}
	w.pipe = parts.New(ctx, d.budget, parts.Options{
		Path: p, Base: int64(st.parts) * st.partSize, PartSize: st.partSize, Concurrency: d.uploadSlots(), Small: parts.DefaultSmall,
		Before: func(ctx context.Context, i int64) error { return w.nextPart(ctx, w.base+int32(i)) },
		Upload: func(ctx context.Context, i int64, b []byte) error { return w.uploadPart(ctx, w.base+int32(i)+1, b) },
		// The session stays as of its last State; what this writer added is discarded.
		Abandon: func() { w.discardCreated(ctx) },
	})
	w.Intake = w.pipe.Intake()
	return w
}

// resume loads the session of st, verifying that the backend's record matches it.
func (w *writer) resume(ctx context.Context, st *writerState) error {
	d := w.d
	tail := st.tail()
	out, err := d.c(ctx).GetObject(ctx, &s3.GetObjectInput{Bucket: &d.bucket, Key: &w.sidecar})
	if err != nil {
		return w.fail(ctx, "writer", err)
	}
	defer out.Body.Close()
	if !sameETag(out.ETag, st.tailETag) || metaValue(out.Metadata, metaSession) != st.sessionMeta() ||
		aws.ToInt64(out.ContentLength) != tail {
		return parts.Errorf("writer", w.path, "resume state superseded by a later State: %w", driver.ErrPreconditionFailed)
	}
	if n, err := w.pipe.ReadFrom(io.LimitReader(out.Body, tail)); err != nil || n != tail {
		if _, ok := errors.AsType[*driver.PathError](err); ok {
			return err
		}
		return w.fail(ctx, "writer", fmt.Errorf("sidecar of %d bytes: read %d: %w", tail, n, err))
	}
	if st.parts > 0 {
		in := &s3.ListPartsInput{Bucket: &d.bucket, Key: &w.key, UploadId: &st.uploadID, MaxParts: aws.Int32(1)}
		if st.parts > 1 {
			in.PartNumberMarker = aws.String(strconv.Itoa(int(st.parts - 1)))
		}
		lp, err := d.c(ctx).ListParts(ctx, in)
		if err != nil {
			return w.fail(ctx, "writer", err)
		}
		if len(lp.Parts) != 1 || aws.ToInt32(lp.Parts[0].PartNumber) != st.parts || !sameETag(lp.Parts[0].ETag, st.lastETag) {
			return parts.Errorf("writer", w.path, "part %d of upload differs from the resume state: %w", st.parts, driver.ErrPreconditionFailed)
		}
	}
	w.uploadID, w.lastETag, w.resumed = st.uploadID, st.lastETag, true
	return nil
}

// parts is the number of parts of the session, once the pipeline is drained.
func (w *writer) parts() int32 { return w.base + int32(w.pipe.Parts()) + w.last }

// drain ends the pipeline for op and returns the bytes it holds. An error other than a
// second end discards what this writer created.
func (w *writer) drain(ctx context.Context) ([]byte, error) {
	tail, err := w.pipe.Drain(ctx)
	if err != nil && !errors.Is(err, parts.ErrEnded) {
		w.finish(ctx, false)
	}
	return tail, err
}

// State implements driver.Writer: it waits for the parts in flight, sends a full buffer
// as a part, and writes the rest with the new progress record to the sidecar.
func (w *writer) State(ctx context.Context) ([]byte, error) {
	tail, err := w.drain(ctx)
	if err != nil {
		return nil, err
	}
	st, err := w.state(ctx, tail)
	w.finish(ctx, err == nil)
	return st, err
}

func (w *writer) state(ctx context.Context, tail []byte) ([]byte, error) {
	if int64(len(tail)) == w.partSize {
		// Keep the sidecar below a part.
		if err := w.uploadLast(ctx, tail); err != nil {
			return nil, err
		}
		tail = nil
	}
	st := writerState{sid: w.sid, partSize: w.partSize, parts: w.parts(), size: w.Size(), uploadID: w.uploadID}
	_, _ = rand.Read(st.nonce[:])
	if st.parts > 0 {
		st.lastETag = w.lastETag
		if part, ok := w.uploaded[st.parts]; ok {
			st.lastETag = aws.ToString(part.ETag)
		}
	}
	out, err := w.d.putObject(ctx, w.sidecar, tail, false, metaSession, st.sessionMeta())
	if err != nil {
		return nil, parts.WithPath("state", w.path, err)
	}
	st.tailETag = aws.ToString(out.ETag)
	w.created = false
	return st.marshal(), nil
}

// Commit implements driver.Writer: a PutObject of the buffered bytes when the session
// never filled a part, else the last part and CompleteMultipartUpload with the part list
// read back from S3; then the sidecar is deleted.
func (w *writer) Commit(ctx context.Context) error {
	tail, err := w.drain(ctx)
	if err != nil {
		return err
	}
	_, _, err = w.commit(ctx, w.key, tail)
	w.finish(ctx, err == nil)
	return err
}

// CommitTo implements driver.CommitterTo. A session that never filled a part is one
// PutObject at dst (whose ETag is the version): nothing is written at the writer's path
// and nothing is copied. The parts of a multipart session can only be completed where
// they were uploaded: at the writer's own path that is all (the completed upload's ETag
// is the version); elsewhere it is followed by a server-side copy to dst (whose ETag is
// the version) and a DeleteObject of the writer's path.
func (w *writer) CommitTo(ctx context.Context, dst string) (string, error) {
	if err := driver.CheckPath(dst); err != nil {
		return "", err
	}
	tail, err := w.drain(ctx)
	if err != nil {
		return "", err
	}
	etag, multipart, err := w.commit(ctx, w.d.key(dst), tail)
	w.finish(ctx, err == nil)
	if err != nil || !multipart || dst == w.path {
		return etag, err
	}
	version, err := w.d.copyObject(ctx, w.path, dst, w.Size())
	if err != nil {
		return "", err
	}
	if _, err := w.d.c(ctx).DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &w.d.bucket, Key: &w.key}); err != nil {
		return "", w.fail(ctx, "commit", err)
	}
	return version, nil
}

// commit ends the session: a single PutObject of tail at single when it never filled a
// part, else tail as the last part and CompleteMultipartUpload at the writer's key
// (multipart is true); etag is the ETag of the object written.
func (w *writer) commit(ctx context.Context, single string, tail []byte) (etag string, multipart bool, err error) {
	d := w.d
	if w.uploadID == "" {
		out, err := d.putObject(ctx, single, tail, true)
		if err != nil {
			return "", false, parts.WithPath("commit", w.path, err)
		}
		etag = aws.ToString(out.ETag)
	} else {
		if len(tail) > 0 {
			if err := w.uploadLast(ctx, tail); err != nil {
				return "", true, err
			}
		}
		list, err := w.partList(ctx)
		if err != nil {
			return "", true, err
		}
		out, err := d.c(ctx).CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &d.bucket, Key: &w.key, UploadId: &w.uploadID,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: list},
		})
		if err != nil {
			return "", true, w.fail(ctx, "commit", err)
		}
		etag = aws.ToString(out.ETag)
	}
	if w.resumed {
		if _, err := d.c(ctx).DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &d.bucket, Key: &w.sidecar}); err != nil {
			return "", w.uploadID != "", w.fail(ctx, "commit", err)
		}
	}
	return etag, w.uploadID != "", nil
}

// partList returns parts 1..w.parts() for CompleteMultipartUpload: those this writer
// sent, and the earlier ones from ListParts (paginated past 1000 parts).
func (w *writer) partList(ctx context.Context) ([]types.CompletedPart, error) {
	d := w.d
	n := w.parts()
	list := make([]types.CompletedPart, n)
	missing := 0
	for i := range list {
		if p, ok := w.uploaded[int32(i+1)]; ok {
			list[i] = p
		} else {
			missing++
		}
	}
	var marker *string
	for missing > 0 {
		out, err := d.c(ctx).ListParts(ctx, &s3.ListPartsInput{
			Bucket: &d.bucket, Key: &w.key, UploadId: &w.uploadID, PartNumberMarker: marker,
		})
		if err != nil {
			return nil, w.fail(ctx, "commit", err)
		}
		for _, p := range out.Parts {
			i := aws.ToInt32(p.PartNumber)
			if i >= 1 && i <= n && list[i-1].ETag == nil {
				list[i-1] = types.CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag, ChecksumCRC32: p.ChecksumCRC32}
				missing--
			}
		}
		next := aws.ToString(out.NextPartNumberMarker)
		if !aws.ToBool(out.IsTruncated) || next == "" || next == aws.ToString(marker) {
			break
		}
		marker = &next
	}
	if missing > 0 {
		return nil, parts.Errorf("commit", w.path, "%d of %d parts missing from the upload: %w", missing, n, driver.ErrPreconditionFailed)
	}
	return list, nil
}

// Abort implements driver.Writer: it stops the uploads in flight, aborts the multipart
// upload and deletes the sidecar. Backend records already gone are not an error.
func (w *writer) Abort(ctx context.Context) error {
	if err := w.pipe.Abort(ctx); errors.Is(err, parts.ErrEnded) {
		return err
	}
	d := w.d
	var errs []error
	if w.uploadID != "" {
		_, err := d.c(ctx).AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &d.bucket, Key: &w.key, UploadId: &w.uploadID})
		if err != nil {
			if ferr := w.fail(ctx, "abort", err); !errors.Is(ferr, driver.ErrNotFound) {
				errs = append(errs, ferr)
			}
		}
	}
	if w.resumed {
		if _, err := d.c(ctx).DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &d.bucket, Key: &w.sidecar}); err != nil {
			errs = append(errs, w.fail(ctx, "abort", err))
		}
	}
	err := errors.Join(errs...)
	w.finish(ctx, err == nil)
	return err
}

// finish ends the writer: it releases the pipeline and, unless ok, aborts in the
// background an upload that no acknowledged state names.
func (w *writer) finish(ctx context.Context, ok bool) {
	w.pipe.Close()
	if !ok {
		w.discardCreated(ctx)
	}
}

// discardCreated aborts, in the background once the parts in flight are done, the
// multipart upload this writer created if no State has named it.
func (w *writer) discardCreated(ctx context.Context) {
	if !w.created {
		return
	}
	w.created = false
	d, key, id := w.d, w.key, w.uploadID
	ctx = context.WithoutCancel(ctx)
	go func() {
		w.pipe.Wait()
		ctx, cancel := context.WithTimeout(ctx, abandonTimeout)
		defer cancel()
		_, _ = d.c(ctx).AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &d.bucket, Key: &key, UploadId: &id})
	}()
}

// nextPart is the pipeline's Before: part number n+1 may be sent once the session has a
// multipart upload.
func (w *writer) nextPart(ctx context.Context, n int32) error {
	if n >= maxParts {
		return parts.Errorf("write", w.path, "object exceeds %d parts of %d bytes (raise storage.s3.chunksize): %w", maxParts, w.partSize, driver.ErrMisconfigured)
	}
	if w.uploadID != "" {
		return nil
	}
	d := w.d
	in := &s3.CreateMultipartUploadInput{Bucket: &d.bucket, Key: &w.key, StorageClass: d.storageClass, ACL: d.acl}
	d.encryption(&in.ServerSideEncryption, &in.SSEKMSKeyId)
	if d.checksums {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
	}
	out, err := d.c(ctx).CreateMultipartUpload(ctx, in)
	if err != nil {
		return w.fail(ctx, "write", err)
	}
	w.uploadID, w.created = aws.ToString(out.UploadId), true
	return nil
}

// uploadLast sends the drained bytes synchronously as the next part (the last one at
// Commit, or a full buffer at State).
func (w *writer) uploadLast(ctx context.Context, b []byte) error {
	n := w.parts()
	if err := w.nextPart(ctx, n); err != nil {
		return err
	}
	w.last = 1
	return w.uploadPart(ctx, n+1, b)
}

// uploadPart sends b as part number n and records it.
func (w *writer) uploadPart(ctx context.Context, n int32, b []byte) error {
	d := w.d
	in := &s3.UploadPartInput{
		Bucket: &d.bucket, Key: &w.key, UploadId: &w.uploadID, PartNumber: aws.Int32(n),
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
	}
	if d.checksums {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
	}
	out, err := d.c(ctx).UploadPart(ctx, in, d.bodyOptions...)
	if err != nil {
		return w.fail(ctx, "write", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.uploaded[n] = types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32}
	return nil
}

func (w *writer) fail(ctx context.Context, op string, err error) error {
	return fail(ctx, op, w.path, err)
}

// sameETag compares ETags ignoring the quotes some stores omit.
func sameETag(got *string, want string) bool {
	return strings.Trim(aws.ToString(got), `"`) == strings.Trim(want, `"`)
}

// metaValue looks up user metadata case-insensitively (stores differ in how they
// return key case).
func metaValue(m map[string]string, key string) string {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

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
	"encoding/binary"
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
)

const (
	// stateMagic starts every encoded state; the byte after it is the format version.
	stateMagic   = "rs3w"
	stateVersion = 1
	// sidecarSep and sidecarSuffix name a session's sidecar: <key>~<sid hex>.tail.
	sidecarSep    = "~"
	sidecarSuffix = ".tail"
	// metaSession is the sidecar's user metadata key recording the acknowledged progress.
	metaSession = "registryd-session"
	// abandonTimeout bounds the background abort of an upload no state names.
	abandonTimeout = time.Minute
)

// errEnded is reported by a Writer used after State, Commit or Abort.
var errEnded = fmt.Errorf("writer already ended by State, Commit or Abort: %w", driver.ErrPreconditionFailed)

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
	b := make([]byte, 0, 96+len(s.uploadID))
	b = append(b, stateMagic...)
	b = append(b, stateVersion)
	b = append(b, s.sid[:]...)
	b = append(b, s.nonce[:]...)
	b = binary.AppendUvarint(b, uint64(s.partSize))
	b = binary.AppendUvarint(b, uint64(s.parts))
	b = binary.AppendUvarint(b, uint64(s.size))
	for _, str := range []string{s.uploadID, s.tailETag, s.lastETag} {
		b = binary.AppendUvarint(b, uint64(len(str)))
		b = append(b, str...)
	}
	return b
}

var errMalformed = errors.New("malformed resume state")

// parseState decodes a state and checks its invariants.
func parseState(b []byte) (*writerState, error) {
	if len(b) < len(stateMagic)+1+12+8 || string(b[:len(stateMagic)]) != stateMagic || b[len(stateMagic)] != stateVersion {
		return nil, errMalformed
	}
	b = b[len(stateMagic)+1:]
	var s writerState
	copy(s.sid[:], b)
	copy(s.nonce[:], b[12:])
	b = b[20:]
	var nums [3]uint64
	for i := range nums {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errMalformed
		}
		nums[i], b = v, b[n:]
	}
	var strs [3]string
	for i := range strs {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return nil, errMalformed
		}
		strs[i], b = string(b[n:n+int(l)]), b[n+int(l):]
	}
	if len(b) != 0 || nums[0] < minChunkSize || nums[0] > maxChunkSize || nums[1] > maxParts || nums[2] > 1<<50 {
		return nil, errMalformed
	}
	s.partSize, s.parts, s.size = int64(nums[0]), int32(nums[1]), int64(nums[2])
	s.uploadID, s.tailETag, s.lastETag = strs[0], strs[1], strs[2]
	if tail := s.tail(); tail < 0 || tail >= s.partSize || (s.parts == 0) != (s.uploadID == "") || (s.parts == 0) != (s.lastETag == "") {
		return nil, errMalformed
	}
	return &s, nil
}

// writer implements driver.Writer; see the comment at the top of this file.
type writer struct {
	d        *Driver
	path     string
	key      string
	sidecar  string
	sid      [12]byte
	partSize int64

	// bgCtx is the Writer's ctx, cancelled by Abort; part uploads use it.
	bgCtx     context.Context
	bgCancel  context.CancelFunc
	stopWatch func() bool

	// mu serialises the caller's calls with the abandonment on ctx cancellation.
	mu       sync.Mutex
	ended    error  // non-nil once the writer may no longer be used
	uploadID string // "" until the first full part is sent
	created  bool   // uploadID was created by this writer and no State has named it yet
	resumed  bool   // the session's sidecar exists
	parts    int32  // part numbers 1..parts are uploaded or in flight
	size     int64
	buf      []byte // the part being filled; nil when none is held (its budget goes with it)
	lastETag string // ETag of part number parts as of the resumed state

	slots chan struct{} // one per part upload in flight
	wg    sync.WaitGroup

	resMu    sync.Mutex
	bgErr    error                         // the first failure of a background part upload
	uploaded map[int32]types.CompletedPart // parts uploaded by this writer
}

// Writer implements driver.Writer. Starting a session (resume == nil) makes no backend
// call. Resuming fetches the sidecar and checks it and the upload against the state (see
// the top of writer.go).
func (d *Driver) Writer(ctx context.Context, p string, resume []byte) (driver.Writer, error) {
	if err := driver.CheckPath(p); err != nil {
		return nil, err
	}
	if resume == nil {
		return d.newWriter(ctx, p), nil
	}
	st, err := parseState(resume)
	if err != nil {
		return nil, &driver.PathError{Op: "writer", Path: p, Err: fmt.Errorf("%w: %w", err, driver.ErrNotFound)}
	}
	if st.partSize > d.budgetSize {
		return nil, &driver.PathError{Op: "writer", Path: p, Err: fmt.Errorf(
			"state part size %d exceeds memorybudget %d: %w", st.partSize, d.budgetSize, driver.ErrMisconfigured)}
	}
	w := d.newSession(ctx, p, st.sid, st.partSize)
	if err := w.resume(ctx, st); err != nil {
		w.mu.Lock()
		w.finish(false)
		w.mu.Unlock()
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
	var sid [12]byte
	_, _ = rand.Read(sid[:])
	return d.newSession(ctx, p, sid, d.chunk)
}

func (d *Driver) newSession(ctx context.Context, p string, sid [12]byte, partSize int64) *writer {
	key := d.key(p)
	w := &writer{
		d:        d,
		path:     p,
		key:      key,
		sidecar:  key + sidecarSep + hex.EncodeToString(sid[:]) + sidecarSuffix,
		sid:      sid,
		partSize: partSize,
		slots:    make(chan struct{}, d.uploadSlots()),
		uploaded: map[int32]types.CompletedPart{},
	}
	w.bgCtx, w.bgCancel = context.WithCancel(ctx)
	w.stopWatch = context.AfterFunc(ctx, w.abandon)
	return w
}

// resume loads the session of st, verifying that the backend's record matches it.
func (w *writer) resume(ctx context.Context, st *writerState) error {
	d := w.d
	tail := st.tail()
	if tail > 0 {
		if err := w.getBuf(ctx); err != nil {
			return err
		}
	}
	out, err := d.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &d.bucket, Key: &w.sidecar})
	if err != nil {
		return w.fail(ctx, "writer", err)
	}
	defer out.Body.Close()
	if !sameETag(out.ETag, st.tailETag) || metaValue(out.Metadata, metaSession) != st.sessionMeta() ||
		aws.ToInt64(out.ContentLength) != tail {
		return w.errorf("writer", "resume state superseded by a later State: %w", driver.ErrPreconditionFailed)
	}
	if tail > 0 {
		w.buf = w.buf[:tail]
		if _, err := io.ReadFull(out.Body, w.buf); err != nil {
			return w.fail(ctx, "writer", err)
		}
	}
	if st.parts > 0 {
		in := &s3.ListPartsInput{Bucket: &d.bucket, Key: &w.key, UploadId: &st.uploadID, MaxParts: aws.Int32(1)}
		if st.parts > 1 {
			in.PartNumberMarker = aws.String(strconv.Itoa(int(st.parts - 1)))
		}
		lp, err := d.client.ListParts(ctx, in)
		if err != nil {
			return w.fail(ctx, "writer", err)
		}
		if len(lp.Parts) != 1 || aws.ToInt32(lp.Parts[0].PartNumber) != st.parts || !sameETag(lp.Parts[0].ETag, st.lastETag) {
			return w.errorf("writer", "part %d of upload differs from the resume state: %w", st.parts, driver.ErrPreconditionFailed)
		}
	}
	w.uploadID, w.parts, w.size, w.lastETag, w.resumed = st.uploadID, st.parts, st.size, st.lastETag, true
	return nil
}

// Write implements driver.Writer.
func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		free, err := w.room()
		if err != nil {
			return n, err
		}
		c := copy(free, p)
		w.filled(c)
		n += c
		p = p[c:]
	}
	return n, nil
}

// ReadFrom implements io.ReaderFrom: it reads r to EOF straight into part buffers, so the
// bytes are not copied through the caller's buffer first. A read error is returned as is.
func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	for {
		if err := w.usable(); err != nil {
			return n, err
		}
		free, err := w.room()
		if err != nil {
			return n, err
		}
		m, err := r.Read(free)
		w.filled(m)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// room returns the free space of the part buffer, taking a buffer when the writer holds
// none and sending a full one first. Called with mu held.
func (w *writer) room() ([]byte, error) {
	for {
		if w.buf == nil {
			if err := w.getBuf(w.bgCtx); err != nil {
				return nil, err
			}
		}
		if int64(len(w.buf)) < w.partSize {
			return w.buf[len(w.buf):w.partSize], nil
		}
		if err := w.flush(); err != nil {
			return nil, err
		}
	}
}

// filled records that n bytes were put into the free space room returned.
func (w *writer) filled(n int) {
	w.buf = w.buf[:len(w.buf)+n]
	w.size += int64(n)
}

// Size implements driver.Writer.
func (w *writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// State implements driver.Writer: it waits for the parts in flight, sends a full buffer
// as a part, and writes the rest with the new progress record to the sidecar.
func (w *writer) State(ctx context.Context) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return nil, err
	}
	st, err := w.state(ctx)
	w.finish(err == nil)
	return st, err
}

func (w *writer) state(ctx context.Context) ([]byte, error) {
	if err := w.wait(ctx); err != nil {
		return nil, err
	}
	if int64(len(w.buf)) == w.partSize {
		// Keep the sidecar below a part.
		if err := w.uploadLast(ctx); err != nil {
			return nil, err
		}
	}
	st := writerState{sid: w.sid, partSize: w.partSize, parts: w.parts, size: w.size, uploadID: w.uploadID}
	_, _ = rand.Read(st.nonce[:])
	if w.parts > 0 {
		st.lastETag = w.lastETag
		if part, ok := w.uploaded[w.parts]; ok {
			st.lastETag = aws.ToString(part.ETag)
		}
	}
	out, err := w.d.putObject(ctx, w.sidecar, w.buf, false, metaSession, st.sessionMeta())
	if err != nil {
		return nil, w.wrap("state", err)
	}
	st.tailETag = aws.ToString(out.ETag)
	w.created = false
	return st.marshal(), nil
}

// Commit implements driver.Writer: a PutObject of the buffered bytes when the session
// never filled a part, else the last part and CompleteMultipartUpload with the part list
// read back from S3; then the sidecar is deleted.
func (w *writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	_, _, err := w.commit(ctx, w.key)
	w.finish(err == nil)
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
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return "", err
	}
	etag, multipart, err := w.commit(ctx, w.d.key(dst))
	w.finish(err == nil)
	if err != nil || !multipart || dst == w.path {
		return etag, err
	}
	version, err := w.d.copyObject(ctx, w.path, dst, w.size)
	if err != nil {
		return "", err
	}
	if _, err := w.d.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &w.d.bucket, Key: &w.key}); err != nil {
		return "", w.fail(ctx, "commit", err)
	}
	return version, nil
}

// commit ends the session: a single PutObject at single when it never filled a part,
// else the last part and CompleteMultipartUpload at the writer's key (multipart is true);
// etag is the ETag of the object written.
func (w *writer) commit(ctx context.Context, single string) (etag string, multipart bool, err error) {
	d := w.d
	if err := w.wait(ctx); err != nil {
		return "", false, err
	}
	if w.uploadID == "" {
		out, err := d.putObject(ctx, single, w.buf, true)
		if err != nil {
			return "", false, w.wrap("commit", err)
		}
		etag = aws.ToString(out.ETag)
	} else {
		if len(w.buf) > 0 {
			if err := w.uploadLast(ctx); err != nil {
				return "", true, err
			}
		}
		parts, err := w.partList(ctx)
		if err != nil {
			return "", true, err
		}
		out, err := d.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &d.bucket, Key: &w.key, UploadId: &w.uploadID,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
		if err != nil {
			return "", true, w.fail(ctx, "commit", err)
		}
		etag = aws.ToString(out.ETag)
	}
	if w.resumed {
		if _, err := d.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &d.bucket, Key: &w.sidecar}); err != nil {
			return "", w.uploadID != "", w.fail(ctx, "commit", err)
		}
	}
	return etag, w.uploadID != "", nil
}

// partList returns parts 1..w.parts for CompleteMultipartUpload: those this writer sent,
// and the earlier ones from ListParts (paginated past 1000 parts).
func (w *writer) partList(ctx context.Context) ([]types.CompletedPart, error) {
	d := w.d
	parts := make([]types.CompletedPart, w.parts)
	missing := 0
	for i := range parts {
		if p, ok := w.uploaded[int32(i+1)]; ok {
			parts[i] = p
		} else {
			missing++
		}
	}
	var marker *string
	for missing > 0 {
		out, err := d.client.ListParts(ctx, &s3.ListPartsInput{
			Bucket: &d.bucket, Key: &w.key, UploadId: &w.uploadID, PartNumberMarker: marker,
		})
		if err != nil {
			return nil, w.fail(ctx, "commit", err)
		}
		for _, p := range out.Parts {
			n := aws.ToInt32(p.PartNumber)
			if n >= 1 && n <= w.parts && parts[n-1].ETag == nil {
				parts[n-1] = types.CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag, ChecksumCRC32: p.ChecksumCRC32}
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
		return nil, w.errorf("commit", "%d of %d parts missing from the upload: %w", missing, w.parts, driver.ErrPreconditionFailed)
	}
	return parts, nil
}

// Abort implements driver.Writer: it stops the uploads in flight, aborts the multipart
// upload and deletes the sidecar. Backend records already gone are not an error.
func (w *writer) Abort(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil && errors.Is(err, errEnded) {
		return err
	}
	w.bgCancel()
	_ = w.wait(ctx)
	d := w.d
	var errs []error
	if w.uploadID != "" {
		_, err := d.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &d.bucket, Key: &w.key, UploadId: &w.uploadID})
		if err != nil {
			if ferr := w.fail(ctx, "abort", err); !errors.Is(ferr, driver.ErrNotFound) {
				errs = append(errs, ferr)
			}
		}
	}
	if w.resumed {
		if _, err := d.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &d.bucket, Key: &w.sidecar}); err != nil {
			errs = append(errs, w.fail(ctx, "abort", err))
		}
	}
	err := errors.Join(errs...)
	w.finish(err == nil)
	return err
}

// usable returns why the writer cannot be used, or nil. Called with mu held.
func (w *writer) usable() error {
	if w.ended != nil {
		return &driver.PathError{Op: "write", Path: w.path, Err: w.ended}
	}
	w.resMu.Lock()
	defer w.resMu.Unlock()
	return w.bgErr
}

// finish ends the writer: it releases the part buffer and the context watch and, unless
// ok, aborts in the background an upload that no acknowledged state names. Called with
// mu held.
func (w *writer) finish(ok bool) {
	w.ended = errEnded
	w.stopWatch()
	w.releaseBuf()
	if !ok {
		w.discardCreated()
	}
	w.bgCancel()
}

// abandon runs when the Writer's ctx is done before State, Commit or Abort: the session
// stays as of its last State, and what this writer added is discarded.
func (w *writer) abandon() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended != nil {
		return
	}
	w.ended = context.Cause(w.bgCtx)
	w.releaseBuf()
	w.discardCreated()
}

// discardCreated aborts, in the background once the parts in flight are done, the
// multipart upload this writer created if no State has named it. Called with mu held.
func (w *writer) discardCreated() {
	if !w.created {
		return
	}
	w.created = false
	d, key, id := w.d, w.key, w.uploadID
	ctx := context.WithoutCancel(w.bgCtx)
	go func() {
		w.wg.Wait()
		ctx, cancel := context.WithTimeout(ctx, abandonTimeout)
		defer cancel()
		_, _ = d.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &d.bucket, Key: &key, UploadId: &id})
	}()
}

// getBuf takes an empty part buffer, waiting for the Driver's memory budget.
func (w *writer) getBuf(ctx context.Context) error {
	if err := w.d.budget.Acquire(ctx, w.partSize); err != nil {
		return w.wrap("write", err)
	}
	if w.partSize == w.d.chunk {
		w.buf = w.d.bufs.Get()
	} else {
		w.buf = make([]byte, 0, w.partSize)
	}
	return nil
}

// releaseBuf returns the part being filled, if any, to the budget.
func (w *writer) releaseBuf() {
	if w.buf != nil {
		w.d.putBuf(w.buf)
		w.buf = nil
	}
}

// putBuf returns a part buffer taken by getBuf to the budget (and the pool).
func (d *Driver) putBuf(b []byte) {
	d.budget.Release(int64(cap(b)))
	d.bufs.Put(b)
}

// flush sends the full part buffer as the next part in the background, creating the
// multipart upload first if needed and waiting for a free upload slot.
func (w *writer) flush() error {
	if w.parts >= maxParts {
		return w.errorf("write", "object exceeds %d parts of %d bytes (raise storage.s3.chunksize): %w", maxParts, w.partSize, driver.ErrMisconfigured)
	}
	if err := w.createUpload(w.bgCtx); err != nil {
		return err
	}
	select {
	case w.slots <- struct{}{}:
	case <-w.bgCtx.Done():
		return w.wrap("write", context.Cause(w.bgCtx))
	}
	w.parts++
	n, buf := w.parts, w.buf
	w.buf = nil
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		part, err := w.uploadPart(w.bgCtx, n, buf)
		w.d.putBuf(buf)
		<-w.slots
		w.record(n, part, err)
	}()
	return nil
}

// uploadLast sends the buffer synchronously as the next part (the last one at Commit,
// or a full buffer at State) and releases it.
func (w *writer) uploadLast(ctx context.Context) error {
	if w.parts >= maxParts {
		return w.errorf("write", "object exceeds %d parts of %d bytes (raise storage.s3.chunksize): %w", maxParts, w.partSize, driver.ErrMisconfigured)
	}
	if err := w.createUpload(ctx); err != nil {
		return err
	}
	w.parts++
	part, err := w.uploadPart(ctx, w.parts, w.buf)
	w.releaseBuf()
	w.record(w.parts, part, err)
	return err
}

// createUpload creates the multipart upload unless the session has one.
func (w *writer) createUpload(ctx context.Context) error {
	if w.uploadID != "" {
		return nil
	}
	d := w.d
	in := &s3.CreateMultipartUploadInput{Bucket: &d.bucket, Key: &w.key, StorageClass: d.storageClass}
	d.encryption(&in.ServerSideEncryption, &in.SSEKMSKeyId)
	if d.checksums {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
	}
	out, err := d.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return w.fail(ctx, "write", err)
	}
	w.uploadID, w.created = aws.ToString(out.UploadId), true
	return nil
}

func (w *writer) uploadPart(ctx context.Context, n int32, b []byte) (types.CompletedPart, error) {
	d := w.d
	in := &s3.UploadPartInput{
		Bucket: &d.bucket, Key: &w.key, UploadId: &w.uploadID, PartNumber: aws.Int32(n),
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
	}
	if d.checksums {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
	}
	out, err := d.client.UploadPart(ctx, in, d.bodyOptions...)
	if err != nil {
		return types.CompletedPart{}, w.fail(ctx, "write", err)
	}
	return types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32}, nil
}

// record keeps the outcome of a part upload.
func (w *writer) record(n int32, part types.CompletedPart, err error) {
	w.resMu.Lock()
	defer w.resMu.Unlock()
	if err != nil {
		if w.bgErr == nil {
			w.bgErr = err
		}
		return
	}
	w.uploaded[n] = part
}

// wait waits for the part uploads in flight and returns the first failure.
func (w *writer) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return w.wrap("write", ctx.Err())
	}
	w.resMu.Lock()
	defer w.resMu.Unlock()
	return w.bgErr
}

func (w *writer) fail(ctx context.Context, op string, err error) error {
	return fail(ctx, op, w.path, err)
}

func (w *writer) wrap(op string, err error) error {
	var pe *driver.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &driver.PathError{Op: op, Path: w.path, Err: err}
}

func (w *writer) errorf(op, format string, args ...any) error {
	return &driver.PathError{Op: op, Path: w.path, Err: fmt.Errorf(format, args...)}
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

package azure

// A Writer session is a set of uncommitted blocks of the target blob, named so that the
// session needs no other record:
//
//	block id = base64( session id (16 random bytes) | kind (1 byte) | index (uint32, big endian) )
//
// kind 'D' is data: block i holds the i-th piece of the object. Full blocks of ChunkSize
// are staged in the background while the caller writes; State stages the bytes short of a
// block as a (smaller) data block of its own, so nothing is ever read back. kind 'A' is an
// acknowledgement mark staged by State after the data: mark n says "a state with n data
// blocks was handed out". kind 'X' is staged by Abort. Marks hold one byte and are never
// committed.
//
// The opaque state is {session id, n, size} (about 30 bytes). Resuming lists the blob's
// uncommitted blocks (Get Block List) and checks them against it:
//   - no block of the session, or an abort mark: the session is gone (committed, which
//     discards all uncommitted blocks, or aborted) → ErrNotFound;
//   - a mark with an index above n: a later State superseded this one → ErrPreconditionFailed;
//   - mark n missing, or data blocks 0..n-1 missing or not summing to size → ErrPreconditionFailed;
//   - data blocks with index ≥ n but no later mark: bytes written after the state and never
//     acknowledged. They are ignored, and overwritten as the resumed writer stages the same
//     ids again; Commit lists only the blocks it acknowledges.
//
// Commit is one Put Block List of data blocks 0..next-1 on the final path: the blob appears
// atomically, Azure discards the session's marks and any unacknowledged blocks, and an
// existing blob at the path is untouched until then. A writer that never staged a block
// commits with a single Put Blob instead, which CommitTo sends straight to another path
// (staged blocks belong to the writer's blob, so CommitTo commits those there and
// copies). Abort leaves the blocks to Azure's garbage collection of uncommitted blocks (a
// week), which never makes them visible.

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"

	"github.com/registryd/registryd/driver"
)

// Block kinds (see the file comment).
const (
	kindData  byte = 'D'
	kindAck   byte = 'A'
	kindAbort byte = 'X'
)

const (
	sessionLen = 16
	blockIDLen = sessionLen + 1 + 4
	// stateVersion is the first byte of every state.
	stateVersion = 0xA1
	// maxBlocks is Azure's limit of committed blocks per blob.
	maxBlocks = 50000
	// minGrow is the first allocation of a writer's buffer that has no size hint.
	minGrow = 64 << 10
)

// blockID returns the base64 id of block idx of kind in session.
func blockID(session [sessionLen]byte, kind byte, idx uint32) string {
	var raw [blockIDLen]byte
	copy(raw[:], session[:])
	raw[sessionLen] = kind
	binary.BigEndian.PutUint32(raw[sessionLen+1:], idx)
	return base64.StdEncoding.EncodeToString(raw[:])
}

// parseBlockID is the inverse of blockID; ok is false for ids of another format.
func parseBlockID(id string) (session [sessionLen]byte, kind byte, idx uint32, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(id)
	if err != nil || len(raw) != blockIDLen {
		return session, 0, 0, false
	}
	copy(session[:], raw)
	return session, raw[sessionLen], binary.BigEndian.Uint32(raw[sessionLen+1:]), true
}

// state is the decoded resume state.
type state struct {
	session [sessionLen]byte
	blocks  uint32 // data blocks 0..blocks-1 are acknowledged
	size    int64  // their total length
}

func (s state) encode() []byte {
	b := make([]byte, 0, 1+sessionLen+2*binary.MaxVarintLen64+4)
	b = append(b, stateVersion)
	b = append(b, s.session[:]...)
	b = binary.AppendUvarint(b, uint64(s.blocks))
	b = binary.AppendUvarint(b, uint64(s.size))
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

var errBadState = fmt.Errorf("%w: malformed resume state", driver.ErrPreconditionFailed)

func decodeState(b []byte) (state, error) {
	var s state
	if len(b) < 1+sessionLen+2+4 || b[0] != stateVersion {
		return s, errBadState
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return s, errBadState
	}
	copy(s.session[:], body[1:])
	rest := body[1+sessionLen:]
	blocks, n := binary.Uvarint(rest)
	if n <= 0 || blocks > maxBlocks {
		return s, errBadState
	}
	rest = rest[n:]
	size, n := binary.Uvarint(rest)
	if n <= 0 || n != len(rest) || size > 1<<62 || (blocks == 0) != (size == 0) {
		return s, errBadState
	}
	s.blocks, s.size = uint32(blocks), int64(size)
	return s, nil
}

// errClosed is returned by a Writer used after State, Commit or Abort.
var errClosed = fmt.Errorf("%w: writer already closed", driver.ErrPreconditionFailed)

// writer implements driver.Writer (and io.ReaderFrom, so io.Copy fills its block buffer
// directly).
type writer struct {
	d    *Driver
	ctx  context.Context // the ctx of Driver.Writer: bounds background uploads
	path string
	blob *blockblob.Client

	session [sessionLen]byte
	resumed bool
	hint    int64 // first buffer size (Put of a known size), 0 for none

	// mu guards the fields below against the ctx watcher (stopWatch); the Writer itself
	// is not for concurrent use.
	mu      sync.Mutex
	closed  bool
	next    uint32 // index of the next data block
	size    int64  // bytes written in the session, staged or buffered
	buf     []byte // the block being filled
	charged int64  // bytes of the memory budget held for buf (its capacity)
	flushed bool   // a full block was staged by this process

	stopWatch func() bool
	slots     chan struct{} // blocks of this writer in flight
	wg        sync.WaitGroup

	errMu sync.Mutex
	err   error // first failure of a background upload, classified
}

var (
	_ driver.Writer = (*writer)(nil)
	_ io.ReaderFrom = (*writer)(nil)
)

func (d *Driver) newWriter(ctx context.Context, p string) *writer {
	w := &writer{d: d, ctx: ctx, path: p, blob: d.blockBlob(p), slots: make(chan struct{}, d.concurrency)}
	// A request that dies mid-stream abandons its writer: when ctx ends, give the buffer
	// back to the budget and fail the writer (its buffered bytes are gone).
	w.stopWatch = context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.dropBuf()
		w.setErr(&driver.PathError{Op: "write", Path: p, Err: ctx.Err()})
	})
	return w
}

// Writer implements driver.Writer. Starting a session makes no backend call; resuming one
// reads the blob's uncommitted block list once to check resume against it.
func (d *Driver) Writer(ctx context.Context, p string, resume []byte) (driver.Writer, error) {
	if err := driver.CheckCall(ctx, "writer", p); err != nil {
		return nil, err
	}
	if resume == nil {
		w := d.newWriter(ctx, p)
		if _, err := rand.Read(w.session[:]); err != nil {
			w.stopWatch()
			return nil, &driver.PathError{Op: "writer", Path: p, Err: fmt.Errorf("%w: %w", driver.ErrUnavailable, err)}
		}
		return w, nil
	}
	st, err := decodeState(resume)
	if err != nil {
		return nil, &driver.PathError{Op: "writer", Path: p, Err: err}
	}
	if err := d.verifySession(ctx, p, st); err != nil {
		return nil, err
	}
	w := d.newWriter(ctx, p)
	w.session, w.resumed, w.next, w.size = st.session, true, st.blocks, st.size
	return w, nil
}

// verifySession checks st against the blob's uncommitted blocks (see the file comment).
func (d *Driver) verifySession(ctx context.Context, p string, st state) error {
	list, err := d.blockBlob(p).GetBlockList(ctx, blockblob.BlockListTypeUncommitted, nil)
	if err != nil {
		return fail("writer", p, err)
	}
	var (
		found, aborted, acked bool
		later                 bool
		sizes                 = make(map[uint32]int64)
	)
	for _, b := range list.UncommittedBlocks {
		if b == nil || b.Name == nil {
			continue
		}
		session, kind, idx, ok := parseBlockID(*b.Name)
		if !ok || session != st.session {
			continue
		}
		found = true
		switch kind {
		case kindAbort:
			aborted = true
		case kindAck:
			acked = acked || idx == st.blocks
			later = later || idx > st.blocks
		case kindData:
			if idx < st.blocks && b.Size != nil {
				sizes[idx] = *b.Size
			}
		}
	}
	stale := func(why string) error {
		return &driver.PathError{Op: "writer", Path: p, Err: fmt.Errorf("%w: %s", driver.ErrPreconditionFailed, why)}
	}
	switch {
	case !found || aborted:
		return &driver.PathError{Op: "writer", Path: p, Err: fmt.Errorf("%w: no upload session", driver.ErrNotFound)}
	case later:
		return stale("the session has moved past this state")
	case !acked:
		return stale("the session never acknowledged this state")
	}
	var total int64
	for i := range st.blocks {
		n, ok := sizes[i]
		if !ok {
			return stale(fmt.Sprintf("block %d of the session is missing", i))
		}
		total += n
	}
	if total != st.size {
		return stale(fmt.Sprintf("the session holds %d bytes, the state says %d", total, st.size))
	}
	return nil
}

// Size implements driver.Writer.
func (w *writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// usable reports why the writer cannot take more bytes, if it cannot.
func (w *writer) usable() error {
	if w.closed {
		return &driver.PathError{Op: "write", Path: w.path, Err: errClosed}
	}
	if err := w.bgErr(); err != nil {
		return err
	}
	if err := w.ctx.Err(); err != nil {
		return &driver.PathError{Op: "write", Path: w.path, Err: err}
	}
	return nil
}

// Write implements driver.Writer.
func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		if err := w.reserve(len(p)); err != nil {
			return written, err
		}
		n := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+n]
		p = p[n:]
		written += n
		w.size += int64(n)
		if int64(len(w.buf)) == w.d.chunk {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// ReadFrom reads r to EOF straight into the block buffer.
func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	var total int64
	for {
		if err := w.reserve(minGrow); err != nil {
			return total, err
		}
		n, err := r.Read(w.buf[len(w.buf):cap(w.buf)])
		w.buf = w.buf[:len(w.buf)+n]
		total += int64(n)
		w.size += int64(n)
		if int64(len(w.buf)) == w.d.chunk {
			if ferr := w.flush(); ferr != nil {
				return total, ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			// Let a slow reader's ctx end an otherwise endless loop of empty reads.
			if err := w.usable(); err != nil {
				return total, err
			}
		}
	}
}

// reserve makes room for at least one more byte in buf (and up to want bytes), growing it
// toward a full block within the memory budget.
func (w *writer) reserve(want int) error {
	if w.buf != nil && len(w.buf) < cap(w.buf) {
		return nil
	}
	chunk := w.d.chunk
	var size int64
	switch {
	case w.buf == nil && w.hint > 0:
		size = w.hint
	case w.buf == nil && w.flushed:
		size = chunk // a large upload: go straight to full blocks
	default:
		size = max(2*int64(cap(w.buf)), int64(len(w.buf)+want), minGrow)
	}
	size = min(size, chunk)
	if err := w.d.budget.Acquire(w.ctx, size-w.charged); err != nil {
		return &driver.PathError{Op: "write", Path: w.path, Err: err}
	}
	var nb []byte
	if size == chunk {
		nb = w.d.bufs.Get()
	} else {
		nb = make([]byte, 0, size)
	}
	nb = append(nb, w.buf...)
	w.buf, w.charged = nb, size
	return nil
}

// dropBuf returns the buffer to the budget (and the pool).
func (w *writer) dropBuf() {
	if w.buf == nil {
		return
	}
	w.d.release(w.buf, w.charged)
	w.buf, w.charged = nil, 0
}

func (d *Driver) release(buf []byte, charged int64) {
	d.bufs.Put(buf)
	d.budget.Release(charged)
}

// flush hands the full buffer to a background upload as the next data block, waiting for
// a free slot when MaxConcurrency blocks are already in flight.
func (w *writer) flush() error {
	if w.next >= maxBlocks {
		return &driver.PathError{Op: "write", Path: w.path,
			Err: fmt.Errorf("%w: more than %d blocks", driver.ErrPreconditionFailed, maxBlocks)}
	}
	select {
	case w.slots <- struct{}{}:
	case <-w.ctx.Done():
		return &driver.PathError{Op: "write", Path: w.path, Err: w.ctx.Err()}
	}
	buf, charged, idx := w.buf, w.charged, w.next
	w.buf, w.charged = nil, 0
	w.next++
	w.flushed = true
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		err := w.stage(w.ctx, kindData, idx, buf)
		w.d.release(buf, charged)
		<-w.slots
		if err != nil {
			w.setErr(err)
		}
	}()
	return nil
}

// setErr records the writer's first failure.
func (w *writer) setErr(err error) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

func (w *writer) bgErr() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// stage uploads data as block idx of kind.
func (w *writer) stage(ctx context.Context, kind byte, idx uint32, data []byte) error {
	sum := md5.Sum(data)
	_, err := w.blob.StageBlock(ctx, blockID(w.session, kind, idx), streaming.NopCloser(bytes.NewReader(data)),
		&blockblob.StageBlockOptions{TransactionalValidation: blob.TransferValidationTypeMD5(sum[:])})
	if err != nil {
		return fail("write", w.path, err)
	}
	return nil
}

// wait waits for the background uploads, or until ctx is done.
func (w *writer) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return &driver.PathError{Op: "write", Path: w.path, Err: ctx.Err()}
	}
}

// finish ends the writer's use: later calls fail, the ctx watcher stops.
func (w *writer) finish(op string) error {
	if w.closed {
		return &driver.PathError{Op: op, Path: w.path, Err: errClosed}
	}
	w.closed = true
	w.stopWatch()
	return nil
}

// stageTail waits for the background uploads and stages the buffered rest as the next
// data block.
func (w *writer) stageTail(ctx context.Context) error {
	if err := w.wait(ctx); err != nil {
		return err
	}
	if err := w.bgErr(); err != nil {
		return err
	}
	if len(w.buf) > 0 {
		if err := w.stage(ctx, kindData, w.next, w.buf); err != nil {
			return err
		}
		w.next++
	}
	return nil
}

// State implements driver.Writer: it stages the buffered bytes as a block, then the
// acknowledgement mark, and returns {session, blocks, size}.
func (w *writer) State(ctx context.Context) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.finish("state"); err != nil {
		return nil, err
	}
	defer w.dropBuf()
	if err := ctx.Err(); err != nil {
		return nil, &driver.PathError{Op: "state", Path: w.path, Err: err}
	}
	if err := w.stageTail(ctx); err != nil {
		return nil, err
	}
	if err := w.stage(ctx, kindAck, w.next, []byte{1}); err != nil {
		return nil, err
	}
	return state{session: w.session, blocks: w.next, size: w.size}.encode(), nil
}

// Commit implements driver.Writer.
func (w *writer) Commit(ctx context.Context) error {
	_, err := w.CommitTo(ctx, w.path)
	return err
}

// CommitTo implements driver.CommitterTo: a session that staged no block is one Put Blob
// at dst; otherwise its block list is committed at the writer's path (staged blocks
// belong to that blob) and, when dst is another path, copied there server-side and
// deleted.
func (w *writer) CommitTo(ctx context.Context, dst string) (string, error) {
	if err := driver.CheckPath(dst); err != nil {
		return "", err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.finish("commit"); err != nil {
		return "", err
	}
	defer w.dropBuf()
	if err := ctx.Err(); err != nil {
		return "", &driver.PathError{Op: "commit", Path: w.path, Err: err}
	}
	if !w.resumed && w.next == 0 {
		// Everything is in memory: one Put Blob.
		sum := md5.Sum(w.buf)
		resp, err := w.d.blockBlob(dst).Upload(ctx, streaming.NopCloser(bytes.NewReader(w.buf)),
			&blockblob.UploadOptions{TransactionalValidation: blob.TransferValidationTypeMD5(sum[:])})
		if err != nil {
			return "", fail("commit", dst, err)
		}
		return etagString(resp.ETag), nil
	}
	if err := w.stageTail(ctx); err != nil {
		return "", err
	}
	ids := make([]string, w.next)
	for i := range ids {
		ids[i] = blockID(w.session, kindData, uint32(i))
	}
	resp, err := w.blob.CommitBlockList(ctx, ids, nil)
	if err != nil {
		return "", fail("commit", w.path, err)
	}
	if dst == w.path {
		return etagString(resp.ETag), nil
	}
	version, err := w.d.copyBlob(ctx, w.path, dst)
	if err != nil {
		return "", err
	}
	if _, err := w.blob.Delete(ctx, nil); err != nil {
		return "", fail("commit", w.path, err)
	}
	return version, nil
}

// etagString is an ETag as Info.Version reports it ("" for none).
func etagString(e *azcore.ETag) string {
	if e == nil {
		return ""
	}
	return string(*e)
}

// Abort implements driver.Writer. A resumed session gets an abort mark so its states can
// no longer be resumed; the blocks themselves are never committed and Azure discards them.
func (w *writer) Abort(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.finish("abort"); err != nil {
		return err
	}
	w.dropBuf()
	if err := w.wait(ctx); err != nil {
		return err
	}
	if !w.resumed {
		return nil // no state of this session was ever handed out
	}
	if err := w.stage(ctx, kindAbort, 0, []byte{1}); err != nil && !errors.Is(err, driver.ErrNotFound) {
		return err
	}
	return nil
}

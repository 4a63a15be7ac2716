package azure

// A Writer session is a set of uncommitted blocks of the target blob, named so that the
// session needs no other record:
//
//	block id = base64( session id (16 random bytes) | kind (1 byte) | index (uint32, big endian) )
//
// kind 'D' is data: block i holds the i-th piece of the object. Full blocks of ChunkSize
// are staged in the background while the caller writes; State stages the bytes it still
// holds (at most a block) as a data block of its own, so nothing is ever read back. kind 'A' is an
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
	"io"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/parts"
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
	// stateKind tags this driver's resume states (see parts.NewRecord).
	stateKind = 'a'
	// maxBlocks is Azure's limit of committed blocks per blob.
	maxBlocks = 50000
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
	return parts.NewRecord(stateKind).Fixed(s.session[:]).Uint(uint64(s.blocks)).Uint(uint64(s.size)).Seal()
}

// decodeState decodes a resume state; it fails with parts.ErrMalformed.
func decodeState(b []byte) (state, error) {
	var s state
	d, err := parts.Open(stateKind, b)
	if err != nil {
		return s, err
	}
	d.Fixed(s.session[:])
	s.blocks, s.size = uint32(d.Uint(maxBlocks)), d.Int(1<<62)
	return s, d.Close((s.blocks == 0) == (s.size == 0))
}

// writer implements driver.Writer (and io.ReaderFrom, so io.Copy fills its block buffer
// directly). Its bytes go through a parts.Pipeline.
type writer struct {
	parts.Intake // Write, ReadFrom, Size
	d            *Driver
	path         string
	blob         *blockblob.Client
	pipe         *parts.Pipeline

	session [sessionLen]byte
	resumed bool
	base    uint32 // data blocks of the session before this writer
	next    uint32 // index of the next data block, once the pipeline is drained
}

var (
	_ driver.Writer = (*writer)(nil)
	_ io.ReaderFrom = (*writer)(nil)
)

func (d *Driver) newWriter(ctx context.Context, p string, st state) *writer {
	w := &writer{d: d, path: p, blob: d.blockBlob(p), session: st.session, base: st.blocks}
	w.pipe = parts.New(ctx, d.budget, parts.Options{
		Path: p, Base: st.size, PartSize: d.chunk, Concurrency: d.concurrency, Small: parts.DefaultSmall,
		Before: func(_ context.Context, i int64) error {
			if int64(w.base)+i >= maxBlocks {
				return parts.Errorf("write", p, "%w: more than %d blocks", driver.ErrPreconditionFailed, maxBlocks)
			}
			return nil
		},
		Upload: func(ctx context.Context, i int64, b []byte) error {
			return w.stage(ctx, kindData, w.base+uint32(i), b)
		},
	})
	w.Intake = w.pipe.Intake()
	return w
}

// Writer implements driver.Writer. Starting a session makes no backend call; resuming one
// reads the blob's uncommitted block list once to check resume against it. A malformed
// state is ErrNotFound.
func (d *Driver) Writer(ctx context.Context, p string, resume []byte) (driver.Writer, error) {
	if err := driver.CheckCall(ctx, "writer", p); err != nil {
		return nil, err
	}
	if resume == nil {
		var st state
		_, _ = rand.Read(st.session[:]) // crypto/rand.Read never fails
		return d.newWriter(ctx, p, st), nil
	}
	st, err := decodeState(resume)
	if err != nil {
		return nil, &driver.PathError{Op: "writer", Path: p, Err: err}
	}
	if err := d.verifySession(ctx, p, st); err != nil {
		return nil, err
	}
	w := d.newWriter(ctx, p, st)
	w.resumed = true
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
	stale := func(why string) error { return parts.Errorf("writer", p, "%w: %s", driver.ErrPreconditionFailed, why) }
	switch {
	case !found || aborted:
		return parts.Errorf("writer", p, "%w: no upload session", driver.ErrNotFound)
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

// stageTail stages the bytes the drained pipeline held as the next data block.
func (w *writer) stageTail(ctx context.Context, tail []byte) error {
	w.next = w.base + uint32(w.pipe.Parts())
	if len(tail) > 0 {
		if err := w.stage(ctx, kindData, w.next, tail); err != nil {
			return err
		}
		w.next++
	}
	return nil
}

// State implements driver.Writer: it stages the buffered bytes as a block, then the
// acknowledgement mark, and returns {session, blocks, size}.
func (w *writer) State(ctx context.Context) ([]byte, error) {
	defer w.pipe.Close()
	tail, err := w.pipe.Drain(ctx)
	if err == nil {
		err = w.stageTail(ctx, tail)
	}
	if err != nil {
		return nil, err
	}
	if err := w.stage(ctx, kindAck, w.next, []byte{1}); err != nil {
		return nil, err
	}
	return state{session: w.session, blocks: w.next, size: w.Size()}.encode(), nil
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
	defer w.pipe.Close()
	tail, err := w.pipe.Drain(ctx)
	if err != nil {
		return "", err
	}
	if !w.resumed && w.pipe.Parts() == 0 {
		// Everything is in memory: one Put Blob.
		sum := md5.Sum(tail)
		resp, err := w.d.blockBlob(dst).Upload(ctx, streaming.NopCloser(bytes.NewReader(tail)),
			&blockblob.UploadOptions{TransactionalValidation: blob.TransferValidationTypeMD5(sum[:])})
		if err != nil {
			return "", fail("commit", dst, err)
		}
		return etagString(resp.ETag), nil
	}
	if err := w.stageTail(ctx, tail); err != nil {
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
	if err := w.pipe.Abort(ctx); err != nil {
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

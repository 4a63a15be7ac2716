package gcs

// A Writer session for the object named K lives in hidden objects next to it:
//
//	K~<session>/m.<seq>           manifest number seq (hex): the segments acknowledged by
//	                              the seq-th State of the session
//	K~<session>/<writer>.<i>      full part i of one writer (chunksize bytes)
//	K~<session>/<writer>.t        the tail a writer uploaded at State or Commit (< chunksize)
//	K~<session>/<writer>.c<l>.<j> Commit's intermediate composites (more than 32 components)
//
// <session> is random per session and <writer> random per Writer value, so the objects a
// writer uploads are its own: no other writer, resumed from the same state or not, ever
// overwrites them. A writer buffers one part at a time and uploads full parts in the
// background (at most maxconcurrency at once, their buffers counted against the Driver's
// memory budget). Components need no minimum size: the bytes a writer holds at State are
// uploaded as its tail and never read back; the next writer starts a new segment.
//
// State writes manifest seq+1 (the segments so far plus the writer's own: writer id, part
// count, part size, tail length) on condition that it does not exist yet, deletes manifest
// seq, and returns {session, seq+1, its generation, size}. Every manifest name is written
// once, so a fast series of States never meets GCS's limit of about one write per second to
// one object name. The session's newest manifest is the backend's record of the latest
// acknowledged state:
//
//   - resuming lists the session's manifests and refuses a state that is not the newest
//     one (a state superseded by a later State) with ErrPreconditionFailed; two writers
//     resumed from the same state cannot both State: the second finds its manifest taken;
//   - bytes written after the last State (a failed request) are in objects no manifest
//     names: a writer resumed from that state ignores them, Commit and Abort delete them.
//
// Commit checks once more that the session is still at its state, composes the components
// of all segments in order into K (server-side, at most 32 sources per call,
// hierarchically beyond), deletes the manifests (the session is gone from then on), then
// everything else under K~<session>/. A writer that never stated and holds less than one
// part uploads K directly. Abort deletes everything under K~<session>/.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"

	"github.com/registryd/registryd/driver"
)

const (
	// stateVersion and manifestVersion lead the encodings below.
	stateVersion    = 1
	manifestVersion = 1
	// idLen is the length of session and writer ids.
	idLen = 8
	// maxComposeSources is GCS's limit of source objects per compose call.
	maxComposeSources = 32
	// firstBuffer is the initial capacity of a writer's first buffer; it doubles up to
	// smallBuffer outside the memory budget, then becomes a full part buffer (see grow).
	firstBuffer = 32 << 10
	smallBuffer = 256 << 10
	// maxManifest bounds the manifest read on resume.
	maxManifest = 16 << 20
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	// errEnded is returned by a Writer used after State, Commit or Abort.
	errEnded = fmt.Errorf("%w: writer already ended by State, Commit or Abort", driver.ErrPreconditionFailed)
	// errBadState is returned for a resume state this driver did not produce.
	errBadState = fmt.Errorf("%w: malformed resume state", driver.ErrPreconditionFailed)
)

// state is the decoded resume state: well under 100 bytes.
type state struct {
	session [idLen]byte
	seq     int64 // number of the manifest written by the State that made this state
	gen     int64 // that manifest's generation
	size    int64
}

func (s state) encode() []byte {
	b := make([]byte, 0, 1+idLen+3*binary.MaxVarintLen64+4)
	b = append(b, stateVersion)
	b = append(b, s.session[:]...)
	b = binary.AppendUvarint(b, uint64(s.seq))
	b = binary.AppendUvarint(b, uint64(s.gen))
	b = binary.AppendUvarint(b, uint64(s.size))
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

func decodeState(b []byte) (state, error) {
	var s state
	if len(b) < 1+idLen+3+4 || b[0] != stateVersion {
		return s, errBadState
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return s, errBadState
	}
	copy(s.session[:], body[1:])
	r := bytes.NewReader(body[1+idLen:])
	seq, err1 := binary.ReadUvarint(r)
	gen, err2 := binary.ReadUvarint(r)
	size, err3 := binary.ReadUvarint(r)
	if err1 != nil || err2 != nil || err3 != nil || r.Len() != 0 ||
		seq == 0 || seq > 1<<62 || gen == 0 || gen > 1<<62 || size > 1<<62 {
		return s, errBadState
	}
	s.seq, s.gen, s.size = int64(seq), int64(gen), int64(size)
	return s, nil
}

// segment is what one writer added to a session: parts full parts of partSize bytes, then
// a tail of tail bytes.
type segment struct {
	writer   [idLen]byte
	parts    int64
	partSize int64
	tail     int64
}

func (s segment) size() int64 { return s.parts*s.partSize + s.tail }

func encodeManifest(segs []segment) []byte {
	b := []byte{manifestVersion}
	b = binary.AppendUvarint(b, uint64(len(segs)))
	for _, s := range segs {
		b = append(b, s.writer[:]...)
		b = binary.AppendUvarint(b, uint64(s.parts))
		b = binary.AppendUvarint(b, uint64(s.partSize))
		b = binary.AppendUvarint(b, uint64(s.tail))
	}
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

var errBadManifest = errors.New("malformed session manifest")

func decodeManifest(b []byte) ([]segment, error) {
	if len(b) < 1+1+4 || b[0] != manifestVersion {
		return nil, errBadManifest
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, errBadManifest
	}
	r := bytes.NewReader(body[1:])
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(r.Len()) {
		return nil, errBadManifest
	}
	segs := make([]segment, n)
	var total int64
	for i := range segs {
		s := &segs[i]
		if _, err := io.ReadFull(r, s.writer[:]); err != nil {
			return nil, errBadManifest
		}
		var v [3]uint64
		for j := range v {
			if v[j], err = binary.ReadUvarint(r); err != nil || v[j] > 1<<40 {
				return nil, errBadManifest
			}
		}
		s.parts, s.partSize, s.tail = int64(v[0]), int64(v[1]), int64(v[2])
		if total += s.size(); total > 1<<62 {
			return nil, errBadManifest
		}
	}
	if r.Len() != 0 {
		return nil, errBadManifest
	}
	return segs, nil
}

// writer implements driver.Writer; see the comment at the top of this file.
type writer struct {
	d       *Driver
	p       string // the caller's path
	key     string // the object name
	session [idLen]byte
	id      [idLen]byte // this writer's id, naming its parts and tail
	prefix  string      // key + "~" + hex(session) + "/"

	// ctx is the ctx given to Driver.Writer (with a cancel for Abort): the contract makes
	// it bound the background part uploads, so the writer keeps it.
	ctx    context.Context
	cancel context.CancelFunc

	segs []segment // segments acknowledged before this writer (from the manifest)
	seq  int64     // number of the manifest resumed from; 0: none yet (a new session)
	gen  int64     // its generation
	base int64     // bytes in segs

	written int64  // bytes written to this writer
	parts   int64  // full parts dispatched
	buf     []byte // the part being filled
	held    int64  // budget held for buf; guarded by mu (see ctxEnded)
	ctxDone bool   // ctx ended and held was returned; guarded by mu

	slots chan struct{} // one token per part upload in flight
	wg    sync.WaitGroup
	mu    sync.Mutex // guards bgErr, held and ctxDone
	bgErr error      // first background upload failure
	ended bool
}

var _ driver.Writer = (*writer)(nil)

// Writer implements driver.Driver. Resuming costs a listing of the session's manifests and
// a read of the newest one. A writer must end with State, Commit or Abort, or with its ctx:
// until then it keeps the budget of the part buffer it is filling.
func (d *Driver) Writer(ctx context.Context, p string, resume []byte) (driver.Writer, error) {
	if err := driver.CheckCall(ctx, "writer", p); err != nil {
		return nil, err
	}
	w := &writer{d: d, p: p, key: d.key(p), slots: make(chan struct{}, d.concurrency)}
	if _, err := rand.Read(w.id[:]); err != nil {
		return nil, &driver.PathError{Op: "writer", Path: p, Err: fmt.Errorf("%w: %w", driver.ErrUnavailable, err)}
	}
	if resume == nil {
		if _, err := rand.Read(w.session[:]); err != nil {
			return nil, &driver.PathError{Op: "writer", Path: p, Err: fmt.Errorf("%w: %w", driver.ErrUnavailable, err)}
		}
		w.prefix = w.key + hiddenMark + hex.EncodeToString(w.session[:]) + "/"
	} else {
		st, err := decodeState(resume)
		if err != nil {
			return nil, &driver.PathError{Op: "writer", Path: p, Err: err}
		}
		w.session = st.session
		w.prefix = w.key + hiddenMark + hex.EncodeToString(w.session[:]) + "/"
		if err := w.checkHead(ctx, st.seq, st.gen); err != nil {
			return nil, fail(ctx, "writer", p, err)
		}
		segs, err := d.readManifest(ctx, w.manifest(st.seq), st.gen)
		if err != nil {
			return nil, fail(ctx, "writer", p, err)
		}
		var size int64
		for _, s := range segs {
			size += s.size()
		}
		if size != st.size {
			return nil, &driver.PathError{Op: "writer", Path: p, Err: fmt.Errorf(
				"%w: the state says %d bytes, the session holds %d", driver.ErrPreconditionFailed, st.size, size)}
		}
		w.segs, w.seq, w.gen, w.base = segs, st.seq, st.gen, size
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	context.AfterFunc(w.ctx, w.ctxEnded)
	return w, nil
}

// checkHead verifies that the session's newest manifest is number seq with generation
// gen: ErrNotFound when the session has none (never stated, committed, aborted),
// ErrPreconditionFailed when it has moved on. The listing also confirms the bucket.
func (w *writer) checkHead(ctx context.Context, seq, gen int64) error {
	q := &storage.Query{Prefix: w.prefix + "m.", Projection: storage.ProjectionNoACL}
	if err := q.SetAttrSelection([]string{"Name", "Generation"}); err != nil {
		return classifyNoObject(err)
	}
	it := w.d.bucket.Objects(ctx, q)
	var headSeq, headGen int64
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return classifyNoObject(err)
		}
		n, perr := strconv.ParseInt(strings.TrimPrefix(a.Name, q.Prefix), 16, 64)
		if perr == nil && n > headSeq {
			headSeq, headGen = n, a.Generation
		}
	}
	switch {
	case headSeq == 0:
		return fmt.Errorf("%w: no writer session %x", driver.ErrNotFound, w.session)
	case headSeq != seq || headGen != gen:
		return fmt.Errorf("%w: the session moved on (state: manifest %d generation %d; backend: manifest %d generation %d)",
			driver.ErrPreconditionFailed, seq, gen, headSeq, headGen)
	}
	return nil
}

// readManifest returns the segments of a session's manifest, which must have generation
// gen: if it is gone or replaced, the session moved on meanwhile (ErrPreconditionFailed).
func (d *Driver) readManifest(ctx context.Context, name string, gen int64) ([]segment, error) {
	r, err := d.bucket.Object(name).NewReader(ctx)
	if err != nil {
		if c := classify(err); !errors.Is(c, driver.ErrNotFound) {
			return nil, c
		}
		return nil, fmt.Errorf("%w: %s is gone: the session moved on", driver.ErrPreconditionFailed, name)
	}
	defer r.Close()
	if r.Attrs.Generation != gen {
		return nil, fmt.Errorf("%w: %s was replaced: the session moved on", driver.ErrPreconditionFailed, name)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxManifest+1))
	if err != nil {
		return nil, classify(err)
	}
	segs, err := decodeManifest(b)
	if err != nil || len(b) > maxManifest {
		return nil, fmt.Errorf("%w: %s: %w", driver.ErrPreconditionFailed, name, errBadManifest)
	}
	return segs, nil
}

func (w *writer) manifest(seq int64) string { return fmt.Sprintf("%sm.%016x", w.prefix, seq) }

func (w *writer) partName(id [idLen]byte, i int64) string {
	return fmt.Sprintf("%s%x.%d", w.prefix, id, i)
}

func (w *writer) tailName(id [idLen]byte) string { return fmt.Sprintf("%s%x.t", w.prefix, id) }

// components returns the object names of segs in order.
func (w *writer) components(segs []segment) []string {
	var names []string
	for _, s := range segs {
		for i := range s.parts {
			names = append(names, w.partName(s.writer, i))
		}
		if s.tail > 0 {
			names = append(names, w.tailName(s.writer))
		}
	}
	return names
}

// Size implements driver.Writer.
func (w *writer) Size() int64 { return w.base + w.written }

// Write implements driver.Writer.
func (w *writer) Write(b []byte) (int, error) {
	if w.ended {
		return 0, &driver.PathError{Op: "write", Path: w.p, Err: errEnded}
	}
	if err := w.background(); err != nil {
		return 0, err
	}
	n := 0
	for len(b) > 0 {
		if len(w.buf) == cap(w.buf) {
			if err := w.grow(); err != nil {
				return n, err
			}
		}
		c := copy(w.buf[len(w.buf):cap(w.buf)], b)
		w.buf = w.buf[:len(w.buf)+c]
		b = b[c:]
		n += c
		w.written += int64(c)
		if int64(len(w.buf)) == w.d.chunk {
			if err := w.dispatch(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// background returns the first failure of a background upload.
func (w *writer) background() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bgErr
}

// grow makes room in buf, which is full and shorter than a part. A writer's first buffer
// starts small and doubles while it stays under smallBuffer, outside the budget (like the
// copy buffer of the request feeding it); beyond that a full-size buffer is taken, with a
// part's worth of the Driver's budget. A writer waits for budget only while it holds none,
// and every budget holder is an upload in flight or a buffer being filled by a writer not
// waiting for budget, so the budget cannot deadlock.
func (w *writer) grow() error {
	d := w.d
	if next := min(max(2*int64(cap(w.buf)), firstBuffer), smallBuffer); w.parts == 0 && int64(cap(w.buf)) < next && next < d.chunk {
		nb := make([]byte, len(w.buf), next)
		copy(nb, w.buf)
		w.buf = nb
		return nil
	}
	if err := d.budget.Acquire(w.ctx, d.chunk); err != nil {
		return fail(w.ctx, "write", w.p, err)
	}
	w.mu.Lock()
	if w.ctxDone {
		// The writer's ctx ended meanwhile and its budget was returned: return this too.
		w.mu.Unlock()
		d.budget.Release(d.chunk)
		return fail(w.ctx, "write", w.p, w.ctx.Err())
	}
	w.held = d.chunk
	w.mu.Unlock()
	w.buf = append(d.getBuffer(), w.buf...)
	return nil
}

// ctxEnded runs when the writer's ctx ends. A writer dropped without State, Commit or Abort
// (a request that failed mid-stream) thereby returns the budget of the buffer it was
// filling; the buffer itself is left to the garbage collector, as its writer may still be
// using it.
func (w *writer) ctxEnded() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ctxDone = true
	if w.held > 0 {
		w.d.budget.Release(w.held)
		w.held = 0
	}
}

// takeHeld hands the budget of the current buffer to the caller.
func (w *writer) takeHeld() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.held
	w.held = 0
	return h
}

func (d *Driver) getBuffer() []byte { return d.bufs.Get() }

// release returns a buffer's budget and recycles full-size buffers.
func (d *Driver) release(buf []byte, held int64) {
	if held > 0 {
		d.budget.Release(held)
	}
	d.bufs.Put(buf)
}

// dispatch uploads the full buffer as the next part in the background.
func (w *writer) dispatch() error {
	buf, held, i := w.buf, w.takeHeld(), w.parts
	w.buf = nil
	select {
	case w.slots <- struct{}{}:
	case <-w.ctx.Done():
		w.d.release(buf, held)
		return fail(w.ctx, "write", w.p, w.ctx.Err())
	}
	w.parts++
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { <-w.slots }()
		_, err := w.d.upload(w.ctx, w.partName(w.id, i), buf, nil)
		w.d.release(buf, held)
		if err != nil {
			w.mu.Lock()
			if w.bgErr == nil {
				w.bgErr = fail(w.ctx, "write", w.p, err)
			}
			w.mu.Unlock()
		}
	}()
	return nil
}

// end marks the writer used up, waits for its uploads and returns the first background
// failure.
func (w *writer) end() error {
	w.ended = true
	w.wg.Wait()
	return w.background()
}

// free returns the part buffer and its budget.
func (w *writer) free() {
	w.d.release(w.buf, w.takeHeld())
	w.buf = nil
}

// flushTail uploads the bytes held in buf as this writer's tail and returns the segment
// this writer adds to the session (none if it wrote nothing).
func (w *writer) flushTail(ctx context.Context) ([]segment, error) {
	if w.written == 0 {
		return nil, nil
	}
	s := segment{writer: w.id, parts: w.parts, partSize: w.d.chunk, tail: int64(len(w.buf))}
	if s.tail > 0 {
		if _, err := w.d.upload(ctx, w.tailName(w.id), w.buf, nil); err != nil {
			return nil, err
		}
	}
	return []segment{s}, nil
}

// State implements driver.Writer.
func (w *writer) State(ctx context.Context) ([]byte, error) {
	if w.ended {
		return nil, &driver.PathError{Op: "state", Path: w.p, Err: errEnded}
	}
	defer w.cancel()
	defer w.free()
	err := w.end()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, fail(ctx, "state", w.p, err)
	}
	if w.written == 0 && w.seq != 0 {
		// Nothing new: the current state stays the latest.
		return state{session: w.session, seq: w.seq, gen: w.gen, size: w.base}.encode(), nil
	}
	seg, err := w.flushTail(ctx)
	if err != nil {
		return nil, fail(ctx, "state", w.p, err)
	}
	segs := append(append([]segment(nil), w.segs...), seg...)
	gen, err := w.d.putManifest(ctx, w.manifest(w.seq+1), encodeManifest(segs))
	if err != nil {
		return nil, fail(ctx, "state", w.p, err)
	}
	if w.seq != 0 {
		// The superseded manifest is no longer needed (the newer one makes its state
		// stale); Commit and Abort remove it if this fails.
		_ = w.d.bucket.Object(w.manifest(w.seq)).If(storage.Conditions{GenerationMatch: w.gen}).Delete(ctx)
	}
	return state{session: w.session, seq: w.seq + 1, gen: gen, size: w.Size()}.encode(), nil
}

// putManifest creates a session's manifest, which must not exist yet, and returns its
// generation. If it exists, another writer stated the session from the same state first:
// ErrPreconditionFailed. An attempt whose answer was lost is recognised on retry by
// reading the manifest back.
func (d *Driver) putManifest(ctx context.Context, name string, data []byte) (int64, error) {
	cond := storage.Conditions{DoesNotExist: true}
	var newGen int64
	failedBefore := false
	err := d.withRetry(ctx, func() error {
		attrs, err := d.uploadOnce(ctx, name, data, &cond)
		if err == nil {
			newGen = attrs.Generation
			return nil
		}
		if failedBefore && errors.Is(err, driver.ErrPreconditionFailed) {
			if r, rerr := d.bucket.Object(name).NewReader(ctx); rerr == nil {
				got, _ := io.ReadAll(io.LimitReader(r, int64(len(data))+1))
				r.Close()
				if bytes.Equal(got, data) {
					newGen = r.Attrs.Generation
					return nil
				}
			}
		}
		failedBefore = true
		return err
	})
	return newGen, err
}

// Commit implements driver.Writer.
func (w *writer) Commit(ctx context.Context) error {
	_, err := w.commit(ctx, w.key)
	return err
}

// CommitTo implements driver.CommitterTo: the session's components are composed straight
// into dst (a session that never filled a part is uploaded there), so nothing is written
// at the writer's path and nothing is copied.
func (w *writer) CommitTo(ctx context.Context, dst string) (string, error) {
	if err := driver.CheckPath(dst); err != nil {
		return "", err
	}
	attrs, err := w.commit(ctx, w.d.key(dst))
	if err != nil || attrs == nil {
		return "", err
	}
	return strconv.FormatInt(attrs.Generation, 10), nil
}

// commit ends the session with its bytes in the object named key, whose attributes it
// returns.
func (w *writer) commit(ctx context.Context, key string) (*storage.ObjectAttrs, error) {
	if w.ended {
		return nil, &driver.PathError{Op: "commit", Path: w.p, Err: errEnded}
	}
	defer w.cancel()
	defer w.free()
	err := w.end()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, fail(ctx, "commit", w.p, err)
	}
	if w.seq == 0 && w.parts == 0 {
		// A new session holding less than a part: no session objects exist.
		attrs, err := w.d.upload(ctx, key, w.buf, nil)
		if err != nil {
			return nil, fail(ctx, "commit", w.p, err)
		}
		return attrs, nil
	}
	seg, err := w.flushTail(ctx)
	if err != nil {
		return nil, fail(ctx, "commit", w.p, err)
	}
	if w.seq != 0 {
		// The session must still be at the state this writer resumed from.
		if err := w.checkHead(ctx, w.seq, w.gen); err != nil {
			return nil, fail(ctx, "commit", w.p, err)
		}
	}
	srcs := w.components(append(append([]segment(nil), w.segs...), seg...))
	var attrs *storage.ObjectAttrs
	if len(srcs) == 0 {
		attrs, err = w.d.upload(ctx, key, nil, nil)
	} else {
		attrs, err = w.compose(ctx, srcs, key)
	}
	if err != nil {
		return nil, fail(ctx, "commit", w.p, err)
	}
	// The object is in place. Drop the manifests first: from then on the session is gone
	// (a retried Commit finds ErrNotFound rather than composing again), then the rest.
	if w.seq != 0 {
		if _, err := w.d.deletePrefix(ctx, w.prefix+"m."); err != nil {
			return nil, fail(ctx, "commit", w.p, err)
		}
	}
	if _, err := w.d.deletePrefix(ctx, w.prefix); err != nil {
		return nil, fail(ctx, "commit", w.p, err)
	}
	return attrs, nil
}

// compose concatenates srcs into the object named key, through intermediate composites
// when there are more than maxComposeSources.
func (w *writer) compose(ctx context.Context, srcs []string, key string) (*storage.ObjectAttrs, error) {
	for level := 0; len(srcs) > maxComposeSources; level++ {
		next := make([]string, (len(srcs)+maxComposeSources-1)/maxComposeSources)
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(w.d.concurrency)
		for j := range next {
			group := srcs[j*maxComposeSources : min(len(srcs), (j+1)*maxComposeSources)]
			next[j] = fmt.Sprintf("%s%x.c%d.%d", w.prefix, w.id, level, j)
			g.Go(func() error {
				_, err := w.d.composeOnce(gctx, group, next[j])
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		srcs = next
	}
	return w.d.composeOnce(ctx, srcs, key)
}

// composeOnce composes srcs (at most maxComposeSources) into dst and returns its
// attributes, retrying transient failures: composing the same sources again gives the
// same object.
func (d *Driver) composeOnce(ctx context.Context, srcs []string, dst string) (*storage.ObjectAttrs, error) {
	handles := make([]*storage.ObjectHandle, len(srcs))
	for i, s := range srcs {
		handles[i] = d.bucket.Object(s)
	}
	var attrs *storage.ObjectAttrs
	err := d.withRetry(ctx, func() error {
		c := d.bucket.Object(dst).ComposerFrom(handles...)
		c.ContentType = "application/octet-stream"
		var err error
		if attrs, err = c.Run(ctx); err != nil {
			return d.notFound(ctx, err)
		}
		return nil
	})
	return attrs, err
}

// Abort implements driver.Writer.
func (w *writer) Abort(ctx context.Context) error {
	if w.ended {
		return &driver.PathError{Op: "abort", Path: w.p, Err: errEnded}
	}
	w.cancel() // stop the uploads in flight
	_ = w.end()
	w.free()
	if w.seq == 0 && w.parts == 0 {
		return nil // a new session that uploaded nothing
	}
	if err := ctx.Err(); err != nil {
		return fail(ctx, "abort", w.p, err)
	}
	if _, err := w.d.deletePrefix(ctx, w.prefix); err != nil {
		return fail(ctx, "abort", w.p, err)
	}
	return nil
}

// upload stores data as the object name in one request carrying its CRC32C, so GCS refuses
// a corrupted body, retrying transient failures. Without a precondition this is safe: the
// driver's own objects are rewritten only with the same content.
func (d *Driver) upload(ctx context.Context, name string, data []byte, cond *storage.Conditions) (*storage.ObjectAttrs, error) {
	var attrs *storage.ObjectAttrs
	err := d.withRetry(ctx, func() error {
		var err error
		attrs, err = d.uploadOnce(ctx, name, data, cond)
		return err
	})
	return attrs, err
}

func (d *Driver) uploadOnce(ctx context.Context, name string, data []byte, cond *storage.Conditions) (*storage.ObjectAttrs, error) {
	o := d.bucket.Object(name)
	if cond != nil {
		o = o.If(*cond)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := o.NewWriter(cctx)
	w.ChunkSize = 0 // one request from our buffer: no second copy in the library
	w.ContentType = "application/octet-stream"
	w.CRC32C = crc32.Checksum(data, castagnoli)
	w.SendCRC32C = true
	if _, err := w.Write(data); err != nil {
		cancel()
		_ = w.Close()
		return nil, classifyNoObject(err)
	}
	if err := w.Close(); err != nil {
		return nil, classifyNoObject(err)
	}
	return w.Attrs(), nil
}

// withRetry runs f, which returns classified errors, until it succeeds, fails with an
// error that is not transient, or d.retry's attempts are spent.
func (d *Driver) withRetry(ctx context.Context, f func() error) error {
	var rnd *mrand.Rand
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || attempt >= d.retry.MaxAttempts || !driver.Retryable(err) {
			return err
		}
		if rnd == nil {
			rnd = mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64()))
		}
		t := time.NewTimer(d.retry.Backoff(attempt, rnd))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (after %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

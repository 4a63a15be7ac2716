package gcs

// A Writer session for the object named K lives in hidden objects next to it:
//
//	K~<session>/m.<seq>           manifest number seq (hex): the segments acknowledged by
//	                              the seq-th State of the session
//	K~<session>/<writer>.<i>      full part i of one writer (chunksize bytes)
//	K~<session>/<writer>.t        the tail a writer uploaded at State or Commit (<= chunksize)
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
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"cloud.google.com/go/storage"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/parts"
)

const (
	// stateKind and manifestKind tag this driver's records (see parts.NewRecord).
	stateKind    = 'g'
	manifestKind = 'm'
	// idLen is the length of session and writer ids.
	idLen = 8
	// maxComposeSources is GCS's limit of source objects per compose call.
	maxComposeSources = 32
	// maxManifest bounds the manifest read on resume.
	maxManifest = 16 << 20
)

// state is the decoded resume state: well under 100 bytes.
type state struct {
	session [idLen]byte
	seq     int64 // number of the manifest written by the State that made this state
	gen     int64 // that manifest's generation
	size    int64
}

func (s state) encode() []byte {
	return parts.NewRecord(stateKind).Fixed(s.session[:]).Uint(uint64(s.seq)).Uint(uint64(s.gen)).Uint(uint64(s.size)).Seal()
}

// decodeState decodes a resume state; it fails with parts.ErrMalformed.
func decodeState(b []byte) (state, error) {
	var s state
	d, err := parts.Open(stateKind, b)
	if err != nil {
		return s, err
	}
	d.Fixed(s.session[:])
	s.seq, s.gen, s.size = d.Int(1<<62), d.Int(1<<62), d.Int(1<<62)
	return s, d.Close(s.seq > 0 && s.gen > 0)
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
	e := parts.NewRecord(manifestKind).Uint(uint64(len(segs)))
	for _, s := range segs {
		e.Fixed(s.writer[:]).Uint(uint64(s.parts)).Uint(uint64(s.partSize)).Uint(uint64(s.tail))
	}
	return e.Seal()
}

var errBadManifest = errors.New("malformed session manifest")

func decodeManifest(b []byte) ([]segment, error) {
	d, err := parts.Open(manifestKind, b)
	if err != nil {
		return nil, errBadManifest
	}
	segs := make([]segment, d.Uint(uint64(d.Len())))
	var total int64
	for i := range segs {
		s := &segs[i]
		d.Fixed(s.writer[:])
		s.parts, s.partSize, s.tail = d.Int(1<<40), d.Int(1<<40), d.Int(1<<40)
		total += s.size()
	}
	if d.Close(total <= 1<<62) != nil {
		return nil, errBadManifest
	}
	return segs, nil
}

// writer implements driver.Writer; see the comment at the top of this file.
type writer struct {
	parts.Intake // Write, ReadFrom, Size
	d            *Driver
	p            string // the caller's path
	key          string // the object name
	session      [idLen]byte
	id           [idLen]byte // this writer's id, naming its parts and tail
	prefix       string      // key + "~" + hex(session) + "/"
	pipe         *parts.Pipeline

	segs []segment // segments acknowledged before this writer (from the manifest)
	seq  int64     // number of the manifest resumed from; 0: none yet (a new session)
	gen  int64     // its generation
	base int64     // bytes in segs
}

var (
	_ driver.Writer = (*writer)(nil)
	_ io.ReaderFrom = (*writer)(nil)
)

// Writer implements driver.Driver. Resuming costs a listing of the session's manifests and
// a read of the newest one; a malformed state is ErrNotFound. A writer must end with
// State, Commit or Abort, or with its ctx: until then it keeps the budget of the part
// buffer it is filling.
func (d *Driver) Writer(ctx context.Context, p string, resume []byte) (driver.Writer, error) {
	if err := driver.CheckCall(ctx, "writer", p); err != nil {
		return nil, err
	}
	w := &writer{d: d, p: p, key: d.key(p)}
	_, _ = rand.Read(w.id[:]) // crypto/rand.Read never fails
	if resume == nil {
		_, _ = rand.Read(w.session[:])
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
			return nil, parts.Errorf("writer", p, "%w: the state says %d bytes, the session holds %d", driver.ErrPreconditionFailed, st.size, size)
		}
		w.segs, w.seq, w.gen, w.base = segs, st.seq, st.gen, size
	}
	w.pipe = parts.New(ctx, d.budget, parts.Options{
		Path: p, Base: w.base, PartSize: d.chunk, Concurrency: d.concurrency, Small: parts.DefaultSmall,
		Upload: func(ctx context.Context, i int64, b []byte) error {
			if _, err := d.upload(ctx, w.partName(w.id, i), b, nil); err != nil {
				return fail(ctx, "write", p, err)
			}
			return nil
		},
	})
	w.Intake = w.pipe.Intake()
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
	it := w.d.b(ctx).Objects(ctx, q)
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
	r, err := d.b(ctx).Object(name).NewReader(ctx)
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

// flushTail uploads the drained bytes as this writer's tail and returns the segment this
// writer adds to the session (none if it wrote nothing).
func (w *writer) flushTail(ctx context.Context, tail []byte) ([]segment, error) {
	if w.pipe.Written() == 0 {
		return nil, nil
	}
	s := segment{writer: w.id, parts: w.pipe.Parts(), partSize: w.d.chunk, tail: int64(len(tail))}
	if s.tail > 0 {
		if _, err := w.d.upload(ctx, w.tailName(w.id), tail, nil); err != nil {
			return nil, err
		}
	}
	return []segment{s}, nil
}

// State implements driver.Writer.
func (w *writer) State(ctx context.Context) ([]byte, error) {
	defer w.pipe.Close()
	tail, err := w.pipe.Drain(ctx)
	if err != nil {
		return nil, err
	}
	if w.pipe.Written() == 0 && w.seq != 0 {
		// Nothing new: the current state stays the latest.
		return state{session: w.session, seq: w.seq, gen: w.gen, size: w.base}.encode(), nil
	}
	seg, err := w.flushTail(ctx, tail)
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
		_ = w.d.b(ctx).Object(w.manifest(w.seq)).If(storage.Conditions{GenerationMatch: w.gen}).Delete(ctx)
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
	err := d.retry.Do(ctx, func(int) error {
		attrs, err := d.uploadOnce(ctx, name, data, &cond)
		if err == nil {
			newGen = attrs.Generation
			return nil
		}
		if failedBefore && errors.Is(err, driver.ErrPreconditionFailed) {
			if r, rerr := d.once.Object(name).NewReader(ctx); rerr == nil {
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
	defer w.pipe.Close()
	tail, err := w.pipe.Drain(ctx)
	if err != nil {
		return nil, err
	}
	if w.seq == 0 && w.pipe.Parts() == 0 {
		// A new session holding at most a part: no session objects exist.
		attrs, err := w.d.upload(ctx, key, tail, nil)
		if err != nil {
			return nil, fail(ctx, "commit", w.p, err)
		}
		return attrs, nil
	}
	seg, err := w.flushTail(ctx, tail)
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
		handles[i] = d.once.Object(s)
	}
	var attrs *storage.ObjectAttrs
	err := d.retry.Do(ctx, func(int) error {
		c := d.once.Object(dst).ComposerFrom(handles...)
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
	if err := w.pipe.Abort(ctx); errors.Is(err, parts.ErrEnded) {
		return err
	}
	if w.seq == 0 && w.pipe.Parts() == 0 {
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
	err := d.retry.Do(ctx, func(int) error {
		var err error
		attrs, err = d.uploadOnce(ctx, name, data, cond)
		return err
	})
	return attrs, err
}

func (d *Driver) uploadOnce(ctx context.Context, name string, data []byte, cond *storage.Conditions) (*storage.ObjectAttrs, error) {
	o := d.once.Object(name)
	if cond != nil {
		o = o.If(*cond)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := o.NewWriter(cctx)
	w.ChunkSize = 0 // one request from our buffer: no second copy in the library
	w.ContentType = "application/octet-stream"
	w.CRC32C = parts.CRC32C(data)
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

// Package inmemory is a driver.Driver that keeps every object in process memory. It is for
// tests and demos: nothing survives a restart and replicas cannot share it.
//
// Who may import it: cmd/registryd and tests.
package inmemory

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/registryd/registryd/driver"
)

// Driver is an in-memory object store, safe for concurrent use.
type Driver struct {
	mu       sync.RWMutex
	gen      uint64 // objects stored so far; guarded by mu
	objects  map[string]object
	sessions map[string]*session
}

type object struct {
	data    []byte // never modified after being stored
	modTime time.Time
	gen     uint64 // the Driver's write counter when it was stored: its Version
}

type session struct {
	path  string
	buf   []byte
	acked int64 // size at the last State; bytes beyond it are unacknowledged
}

var _ driver.Driver = (*Driver)(nil)

// New returns an empty store.
func New() *Driver {
	return &Driver{objects: map[string]object{}, sessions: map[string]*session{}}
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "inmemory" }

func fail(op, p string, err error) error { return &driver.PathError{Op: op, Path: p, Err: err} }

// Stat implements driver.Driver.
func (d *Driver) Stat(ctx context.Context, p string) (driver.Info, error) {
	if err := driver.CheckCall(ctx, "stat", p); err != nil {
		return driver.Info{}, err
	}
	d.mu.RLock()
	o, ok := d.objects[p]
	d.mu.RUnlock()
	if !ok {
		return driver.Info{}, fail("stat", p, driver.ErrNotFound)
	}
	return driver.Info{Path: p, Size: int64(len(o.data)), ModTime: o.modTime, Version: o.version()}, nil
}

// Reader implements driver.Driver.
func (d *Driver) Reader(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	if err := driver.CheckCall(ctx, "reader", p); err != nil {
		return nil, err
	}
	d.mu.RLock()
	o, ok := d.objects[p]
	d.mu.RUnlock()
	if !ok {
		return nil, fail("reader", p, driver.ErrNotFound)
	}
	b := o.data[min(offset, int64(len(o.data))):]
	if length >= 0 && length < int64(len(b)) {
		b = b[:length]
	}
	return driver.WithVersionAndSize(io.NopCloser(bytes.NewReader(b)), o.version(), int64(len(o.data))), nil
}

func (o object) version() string { return strconv.FormatUint(o.gen, 10) }

// store puts o at p with the next generation. The caller holds d.mu.
func (d *Driver) store(p string, o object) {
	d.gen++
	o.gen = d.gen
	d.objects[p] = o
}

// Put implements driver.Driver.
func (d *Driver) Put(ctx context.Context, p string, r io.Reader, size int64) error {
	if err := driver.CheckCall(ctx, "put", p); err != nil {
		return err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return fail("put", p, fmt.Errorf("%w: %w", driver.ErrUnavailable, err))
	}
	if err := ctx.Err(); err != nil {
		return fail("put", p, err)
	}
	d.mu.Lock()
	d.store(p, object{data: b, modTime: time.Now()})
	d.mu.Unlock()
	return nil
}

// PutIf implements driver.Driver: the version check and the store happen under the
// driver's lock.
func (d *Driver) PutIf(ctx context.Context, p string, r io.Reader, size int64, ifVersion string) (string, error) {
	b, err := driver.ReadConditionalBody(ctx, p, r, size)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fail("putif", p, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.objects[p]
	switch {
	case ifVersion == "" && ok:
		return "", fail("putif", p, fmt.Errorf("%w: object exists", driver.ErrPreconditionFailed))
	case ifVersion != "" && !ok:
		return "", fail("putif", p, fmt.Errorf("%w: no object, want version %s", driver.ErrPreconditionFailed, ifVersion))
	case ifVersion != "" && o.version() != ifVersion:
		return "", fail("putif", p, fmt.Errorf("%w: version %s, want %s", driver.ErrPreconditionFailed, o.version(), ifVersion))
	}
	d.store(p, object{data: b, modTime: time.Now()})
	return d.objects[p].version(), nil
}

// Delete implements driver.Driver.
func (d *Driver) Delete(ctx context.Context, p string) error {
	if err := driver.CheckCall(ctx, "delete", p); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.objects[p]; ok {
		delete(d.objects, p)
		return nil
	}
	found := false
	for k := range d.objects {
		if strings.HasPrefix(k, p+"/") {
			delete(d.objects, k)
			found = true
		}
	}
	for id, s := range d.sessions {
		if strings.HasPrefix(s.path, p+"/") {
			delete(d.sessions, id)
		}
	}
	if !found {
		return fail("delete", p, driver.ErrNotFound)
	}
	return nil
}

// List implements driver.Driver.
func (d *Driver) List(ctx context.Context, dir, after string, limit int) ([]driver.Info, error) {
	prefix := ""
	if dir != "" {
		if err := driver.CheckCall(ctx, "list", dir); err != nil {
			return nil, err
		}
		prefix = dir + "/"
	} else if err := ctx.Err(); err != nil {
		return nil, fail("list", dir, err)
	}
	seen := map[string]driver.Info{}
	d.mu.RLock()
	for k, o := range d.objects {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			p := prefix + rest[:i]
			seen[p] = driver.Info{Path: p, IsDir: true}
		} else {
			seen[k] = driver.Info{Path: k, Size: int64(len(o.data)), ModTime: o.modTime}
		}
	}
	d.mu.RUnlock()
	out := make([]driver.Info, 0, len(seen))
	for p, fi := range seen {
		if after == "" || p > after {
			out = append(out, fi)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Copy implements driver.Driver.
func (d *Driver) Copy(ctx context.Context, src, dst string) error {
	if err := driver.CheckCall(ctx, "copy", src); err != nil {
		return err
	}
	if err := driver.CheckCall(ctx, "copy", dst); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.objects[src]
	if !ok {
		return fail("copy", src, driver.ErrNotFound)
	}
	d.store(dst, object{data: o.data, modTime: time.Now()})
	return nil
}

// URL implements driver.Driver: in-memory objects have no URL.
func (d *Driver) URL(ctx context.Context, p string, expiry time.Duration) (string, error) {
	return "", fail("url", p, driver.ErrUnsupported)
}

type writerState struct {
	ID   string `json:"i"`
	Size int64  `json:"s"`
}

// Writer implements driver.Driver.
func (d *Driver) Writer(ctx context.Context, p string, resume []byte) (driver.Writer, error) {
	if err := driver.CheckCall(ctx, "writer", p); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if resume == nil {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		id := hex.EncodeToString(b)
		s := &session{path: p}
		d.sessions[id] = s
		return &memWriter{d: d, id: id, s: s}, nil
	}
	var st writerState
	if err := json.Unmarshal(resume, &st); err != nil {
		return nil, fail("writer", p, fmt.Errorf("%w: malformed resume state", driver.ErrNotFound))
	}
	s, ok := d.sessions[st.ID]
	if !ok || s.path != p {
		return nil, fail("writer", p, driver.ErrNotFound)
	}
	if s.acked != st.Size {
		return nil, fail("writer", p, fmt.Errorf("%w: session acknowledged %d bytes, state says %d", driver.ErrPreconditionFailed, s.acked, st.Size))
	}
	s.buf = s.buf[:st.Size] // drop unacknowledged bytes
	return &memWriter{d: d, id: st.ID, s: s, size: st.Size}, nil
}

// memWriter appends to its session's buffer under the driver lock; a writer resumed from a
// stale state was refused above, so only one writer appends at a time in correct use.
type memWriter struct {
	d    *Driver
	id   string
	s    *session
	size int64
	done bool
}

var errClosed = errors.New("writer already closed")

func (w *memWriter) Write(b []byte) (int, error) {
	if w.done {
		return 0, fail("write", w.s.path, errClosed)
	}
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	if int64(len(w.s.buf)) != w.size {
		return 0, fail("write", w.s.path, driver.ErrPreconditionFailed)
	}
	w.s.buf = append(w.s.buf, b...)
	w.size += int64(len(b))
	return len(b), nil
}

func (w *memWriter) Size() int64 { return w.size }

func (w *memWriter) end(op string) error {
	if w.done {
		return fail(op, w.s.path, errClosed)
	}
	w.done = true
	return nil
}

func (w *memWriter) State(ctx context.Context) ([]byte, error) {
	if err := w.end("state"); err != nil {
		return nil, err
	}
	w.d.mu.Lock()
	if int64(len(w.s.buf)) != w.size {
		w.d.mu.Unlock()
		return nil, fail("state", w.s.path, driver.ErrPreconditionFailed)
	}
	w.s.acked = w.size
	w.d.mu.Unlock()
	return json.Marshal(writerState{ID: w.id, Size: w.size})
}

func (w *memWriter) Commit(ctx context.Context) error {
	_, err := w.commit(ctx, w.s.path)
	return err
}

// CommitTo implements driver.CommitterTo: the session's bytes are stored at dst.
func (w *memWriter) CommitTo(ctx context.Context, dst string) (string, error) {
	if err := driver.CheckPath(dst); err != nil {
		return "", err
	}
	return w.commit(ctx, dst)
}

// commit stores the session's bytes at p and returns the object's version.
func (w *memWriter) commit(ctx context.Context, p string) (string, error) {
	if err := w.end("commit"); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fail("commit", w.s.path, err)
	}
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	if _, ok := w.d.sessions[w.id]; !ok {
		return "", fail("commit", w.s.path, driver.ErrNotFound)
	}
	delete(w.d.sessions, w.id)
	w.d.store(p, object{data: w.s.buf[:w.size:w.size], modTime: time.Now()})
	return w.d.objects[p].version(), nil
}

func (w *memWriter) Abort(ctx context.Context) error {
	if err := w.end("abort"); err != nil {
		return err
	}
	w.d.mu.Lock()
	delete(w.d.sessions, w.id)
	w.d.mu.Unlock()
	return nil
}

// Package filesystem is the driver.Driver that stores objects as files under a root
// directory. Objects are written to temporary files and renamed into place, so readers never
// see a partial object; Copy hard-links where it can. Writer sessions live in hidden files
// next to their object (names with "~", which no valid path contains), so any process
// sharing the directory can resume them.
//
// Who may import it: cmd/registryd and tests.
package filesystem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/registryd/registryd/driver"
)

// Driver stores objects under a root directory. It is safe for concurrent use by several
// goroutines and several processes sharing the directory.
type Driver struct {
	root string
}

var _ driver.Driver = (*Driver)(nil)

// tmpDir holds Put's temporary files; "~" keeps it out of every listing.
const tmpDir = "~tmp"

// New returns a driver rooted at the directory root, creating it if needed. root must not
// be empty (a relative root is resolved against the working directory once, here).
func New(root string) (*Driver, error) {
	if root == "" {
		return nil, errors.New("filesystem: root directory is empty")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("filesystem: root directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, tmpDir), 0o755); err != nil {
		return nil, fmt.Errorf("filesystem: create %s: %w", root, err)
	}
	return &Driver{root: root}, nil
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "filesystem" }

func (d *Driver) full(p string) string { return filepath.Join(d.root, filepath.FromSlash(p)) }

// classify maps an os error onto the driver contract.
func classify(op, p string, err error) error {
	if err == nil {
		return nil
	}
	var c error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		c = err
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		c = fmt.Errorf("%w: %w", driver.ErrNotFound, err)
	case errors.Is(err, fs.ErrPermission):
		c = fmt.Errorf("%w: %w", driver.ErrPermission, err)
	case errors.Is(err, driver.ErrNotFound), errors.Is(err, driver.ErrPreconditionFailed),
		errors.Is(err, driver.ErrUnsupported), errors.Is(err, driver.ErrInvalidPath):
		c = err
	default:
		c = fmt.Errorf("%w: %w", driver.ErrUnavailable, err)
	}
	return &driver.PathError{Op: op, Path: p, Err: c}
}

// Stat implements driver.Driver.
func (d *Driver) Stat(ctx context.Context, p string) (driver.Info, error) {
	if err := driver.CheckCall(ctx, "stat", p); err != nil {
		return driver.Info{}, err
	}
	fi, err := os.Stat(d.full(p))
	if err != nil {
		return driver.Info{}, classify("stat", p, err)
	}
	if fi.IsDir() {
		return driver.Info{}, classify("stat", p, fs.ErrNotExist)
	}
	return driver.Info{Path: p, Size: fi.Size(), ModTime: fi.ModTime(), Version: version(fi)}, nil
}

// Reader implements driver.Driver.
func (d *Driver) Reader(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	if err := driver.CheckCall(ctx, "reader", p); err != nil {
		return nil, err
	}
	f, err := os.Open(d.full(p))
	if err != nil {
		return nil, classify("reader", p, err)
	}
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		f.Close()
		if err == nil {
			err = fs.ErrNotExist
		}
		return nil, classify("reader", p, err)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, classify("reader", p, err)
	}
	var r io.Reader = f
	if length >= 0 {
		r = io.LimitReader(f, length)
	}
	return &ctxReader{ctx: ctx, r: r, c: f, p: p, v: version(fi), size: fi.Size()}, nil
}

// version identifies a file's content: its inode (a committed object is a new file
// renamed into place), size and modification time (an in-place edit changes them).
func version(fi fs.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%x-%x-%x", ino, fi.Size(), fi.ModTime().UnixNano())
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx  context.Context
	r    io.Reader
	c    io.Closer
	p    string
	v    string
	size int64
}

// Version implements driver.VersionedReader.
func (r *ctxReader) Version() string { return r.v }

// ObjectSize implements driver.SizedReader.
func (r *ctxReader) ObjectSize() int64 { return r.size }

func (r *ctxReader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, &driver.PathError{Op: "read", Path: r.p, Err: err}
	}
	n, err := r.r.Read(b)
	if err != nil && !errors.Is(err, io.EOF) {
		err = classify("read", r.p, err)
	}
	return n, err
}

func (r *ctxReader) Close() error { return r.c.Close() }

// writeTemp copies r into a new temporary file and returns its name.
func (d *Driver) writeTemp(ctx context.Context, r io.Reader) (string, error) {
	f, err := os.CreateTemp(filepath.Join(d.root, tmpDir), "put-")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) { // root removed under us: recreate
			if err := os.MkdirAll(filepath.Join(d.root, tmpDir), 0o755); err != nil {
				return "", err
			}
			f, err = os.CreateTemp(filepath.Join(d.root, tmpDir), "put-")
		}
		if err != nil {
			return "", err
		}
	}
	_, err = io.Copy(f, &ctxReader{ctx: ctx, r: r, c: f})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// place renames tmp to the object path p, creating directories, under p's stripe lock
// (see lockDir).
func (d *Driver) place(ctx context.Context, tmp, p string) error {
	dst := d.full(p)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := d.locked(ctx, p, func() error { return os.Rename(tmp, dst) }); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Put implements driver.Driver.
func (d *Driver) Put(ctx context.Context, p string, r io.Reader, size int64) error {
	if err := driver.CheckCall(ctx, "put", p); err != nil {
		return err
	}
	tmp, err := d.writeTemp(ctx, r)
	if err != nil {
		return classify("put", p, err)
	}
	return classify("put", p, d.place(ctx, tmp, p))
}

// Delete implements driver.Driver.
func (d *Driver) Delete(ctx context.Context, p string) error {
	if err := driver.CheckCall(ctx, "delete", p); err != nil {
		return err
	}
	full := d.full(p)
	fi, err := os.Lstat(full)
	if err != nil {
		return classify("delete", p, err)
	}
	if fi.IsDir() {
		err = os.RemoveAll(full)
	} else {
		err = d.locked(ctx, p, func() error { return os.Remove(full) })
	}
	if err != nil {
		return classify("delete", p, err)
	}
	d.pruneEmpty(filepath.Dir(full))
	return nil
}

// pruneEmpty removes empty directories from dir up to the root, so that directories stay
// implicit as in object stores. A concurrent writer that needs one recreates it.
func (d *Driver) pruneEmpty(dir string) {
	for dir != d.root && strings.HasPrefix(dir, d.root+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// List implements driver.Driver.
func (d *Driver) List(ctx context.Context, dir, after string, limit int) ([]driver.Info, error) {
	if dir != "" {
		if err := driver.CheckCall(ctx, "list", dir); err != nil {
			return nil, err
		}
	} else if err := ctx.Err(); err != nil {
		return nil, &driver.PathError{Op: "list", Path: dir, Err: err}
	}
	entries, err := os.ReadDir(d.full(dir))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return []driver.Info{}, nil
	}
	if err != nil {
		return nil, classify("list", dir, err)
	}
	out := []driver.Info{}
	for _, e := range entries { // ReadDir sorts by name, which is path order within dir
		name := e.Name()
		if driver.CheckPath(name) != nil {
			continue // temporary and session files
		}
		p := path.Join(dir, name)
		if after != "" && p <= after {
			continue
		}
		if e.IsDir() && !holdsObject(filepath.Join(d.full(dir), name)) {
			// A directory with no object under it is not there for an object store:
			// an empty one is what a crash between mkdir and rename leaves behind.
			continue
		}
		info := driver.Info{Path: p, IsDir: e.IsDir()}
		if !e.IsDir() {
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while listing
			}
			if err != nil {
				return nil, classify("list", dir, err)
			}
			info.Size, info.ModTime = fi.Size(), fi.ModTime()
		}
		out = append(out, info)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

// holdsObject reports whether the directory at full holds an object, at any depth. It
// stops at the first one; a directory it cannot read counts as holding one.
func holdsObject(full string) bool {
	entries, err := os.ReadDir(full)
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	for _, e := range entries {
		if driver.CheckPath(e.Name()) != nil {
			continue // temporary and session files
		}
		if !e.IsDir() || holdsObject(filepath.Join(full, e.Name())) {
			return true
		}
	}
	return false
}

// Copy implements driver.Driver. It hard-links src to dst when it can (objects are never
// modified in place, only replaced by rename, so sharing the inode is safe) and copies
// the bytes otherwise.
func (d *Driver) Copy(ctx context.Context, src, dst string) error {
	if err := driver.CheckCall(ctx, "copy", src); err != nil {
		return err
	}
	if err := driver.CheckCall(ctx, "copy", dst); err != nil {
		return err
	}
	tmp := filepath.Join(d.root, tmpDir, "link-"+randID())
	if err := os.Link(d.full(src), tmp); err == nil {
		return classify("copy", dst, d.place(ctx, tmp, dst))
	} else if errors.Is(err, fs.ErrNotExist) {
		return classify("copy", src, err)
	}
	f, err := os.Open(d.full(src))
	if err != nil {
		return classify("copy", src, err)
	}
	defer f.Close()
	tmp, err = d.writeTemp(ctx, f)
	if err != nil {
		return classify("copy", dst, err)
	}
	return classify("copy", dst, d.place(ctx, tmp, dst))
}

// URL implements driver.Driver: the filesystem cannot sign URLs.
func (d *Driver) URL(ctx context.Context, p string, expiry time.Duration) (string, error) {
	return "", &driver.PathError{Op: "url", Path: p, Err: driver.ErrUnsupported}
}

func randID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writerState is the resume state: the session file and how many bytes it held.
type writerState struct {
	ID   string `json:"i"`
	Size int64  `json:"s"`
}

// Writer implements driver.Driver. The session's bytes go to "<path>~<id>" beside the
// object and are renamed onto it at Commit; "<path>~<id>.ack" records the size
// acknowledged by the last State.
func (d *Driver) Writer(ctx context.Context, p string, resume []byte) (driver.Writer, error) {
	if err := driver.CheckCall(ctx, "writer", p); err != nil {
		return nil, err
	}
	st := writerState{ID: randID()}
	if resume != nil {
		if err := json.Unmarshal(resume, &st); err != nil || len(st.ID) != 24 || strings.Trim(st.ID, "0123456789abcdef") != "" || st.Size < 0 {
			return nil, &driver.PathError{Op: "writer", Path: p, Err: fmt.Errorf("%w: malformed resume state", driver.ErrNotFound)}
		}
	}
	w := &fileWriter{d: d, path: p, file: d.full(p) + "~" + st.ID, id: st.ID, size: st.Size}
	if resume == nil {
		if err := os.MkdirAll(filepath.Dir(w.file), 0o755); err != nil {
			return nil, classify("writer", p, err)
		}
		if err := w.ack(0); err != nil {
			return nil, classify("writer", p, err)
		}
		f, err := os.OpenFile(w.file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			os.Remove(w.file + ".ack")
			return nil, classify("writer", p, err)
		}
		w.f = f
		return w, nil
	}
	b, err := os.ReadFile(w.file + ".ack")
	if err != nil {
		return nil, classify("writer", p, err)
	}
	acked, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || acked != st.Size {
		return nil, &driver.PathError{Op: "writer", Path: p, Err: fmt.Errorf("%w: session acknowledged %s bytes, state says %d", driver.ErrPreconditionFailed, b, st.Size)}
	}
	f, err := os.OpenFile(w.file, os.O_WRONLY, 0o644)
	if err != nil {
		return nil, classify("writer", p, err)
	}
	// Drop bytes written after the last State by a request that failed.
	if err := f.Truncate(st.Size); err != nil {
		f.Close()
		return nil, classify("writer", p, err)
	}
	if _, err := f.Seek(st.Size, io.SeekStart); err != nil {
		f.Close()
		return nil, classify("writer", p, err)
	}
	w.f = f
	return w, nil
}

// ack atomically records n as the session's acknowledged size.
func (w *fileWriter) ack(n int64) error {
	tmp := w.file + ".ack~" + randID()
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(n, 10)), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, w.file+".ack"); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

type fileWriter struct {
	d    *Driver
	path string
	file string
	id   string
	f    *os.File
	size int64
	done bool
}

var errClosed = errors.New("writer already closed")

func (w *fileWriter) Write(b []byte) (int, error) {
	if w.done {
		return 0, classify("write", w.path, errClosed)
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	if err != nil {
		return n, classify("write", w.path, err)
	}
	return n, nil
}

func (w *fileWriter) Size() int64 { return w.size }

func (w *fileWriter) finish() error {
	if w.done {
		return errClosed
	}
	w.done = true
	return nil
}

func (w *fileWriter) State(ctx context.Context) ([]byte, error) {
	if err := w.finish(); err != nil {
		return nil, classify("state", w.path, err)
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = w.ack(w.size)
	}
	if err != nil {
		return nil, classify("state", w.path, err)
	}
	return json.Marshal(writerState{ID: w.id, Size: w.size})
}

func (w *fileWriter) Commit(ctx context.Context) error { return w.commit(ctx, w.path) }

// CommitTo implements driver.CommitterTo: the session file is renamed to dst.
func (w *fileWriter) CommitTo(ctx context.Context, dst string) (string, error) {
	if err := driver.CheckPath(dst); err != nil {
		return "", err
	}
	if err := w.commit(ctx, dst); err != nil {
		return "", err
	}
	fi, err := os.Stat(w.d.full(dst))
	if err != nil {
		return "", nil //nolint:nilerr // committed; the version is merely unknown
	}
	return version(fi), nil
}

// commit syncs the session file and renames it to the object at p.
func (w *fileWriter) commit(ctx context.Context, p string) error {
	if err := w.finish(); err != nil {
		return classify("commit", w.path, err)
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && p != w.path {
		err = os.MkdirAll(filepath.Dir(w.d.full(p)), 0o755)
	}
	if err == nil {
		err = w.d.locked(ctx, p, func() error { return os.Rename(w.file, w.d.full(p)) })
	}
	os.Remove(w.file + ".ack")
	if err != nil {
		os.Remove(w.file)
		return classify("commit", w.path, err)
	}
	return nil
}

func (w *fileWriter) Abort(ctx context.Context) error {
	if err := w.finish(); err != nil {
		return classify("abort", w.path, err)
	}
	w.f.Close()
	os.Remove(w.file + ".ack")
	if err := os.Remove(w.file); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return classify("abort", w.path, err)
	}
	w.d.pruneEmpty(filepath.Dir(w.file))
	return nil
}

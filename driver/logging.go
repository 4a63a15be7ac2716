package driver

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// WithLogging returns a Driver that logs every call to d at debug level: the operation,
// path, latency and error, and for writers each State, Commit, CommitTo and Abort. It is
// meant for log.level: debug only (cmd/registryd installs it then); wrap it inside
// WithRetry so that each attempt is logged. Optional capabilities of d (SessionPurger)
// and of its writers (CommitterTo) are kept.
func WithLogging(d Driver, log *slog.Logger) Driver {
	return &logDriver{Driver: d, log: log.With("driver", d.Name())}
}

type logDriver struct {
	Driver
	log *slog.Logger
}

// done logs one finished backend call.
func (l *logDriver) done(ctx context.Context, op, path string, start time.Time, err error, attrs ...slog.Attr) {
	attrs = append(attrs, slog.String("op", op), slog.String("path", path), slog.Duration("latency", time.Since(start)))
	if err != nil {
		attrs = append(attrs, slog.Any("error", err))
	}
	l.log.LogAttrs(ctx, slog.LevelDebug, "backend call", attrs...)
}

func (l *logDriver) Stat(ctx context.Context, path string) (Info, error) {
	start := time.Now()
	fi, err := l.Driver.Stat(ctx, path)
	l.done(ctx, "stat", path, start, err, slog.Int64("size", fi.Size))
	return fi, err
}

func (l *logDriver) Reader(ctx context.Context, path string, offset, length int64) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := l.Driver.Reader(ctx, path, offset, length)
	l.done(ctx, "reader", path, start, err, slog.Int64("offset", offset), slog.Int64("length", length))
	return rc, err
}

func (l *logDriver) Put(ctx context.Context, path string, r io.Reader, size int64) error {
	start := time.Now()
	err := l.Driver.Put(ctx, path, r, size)
	l.done(ctx, "put", path, start, err, slog.Int64("size", size))
	return err
}

func (l *logDriver) PutIf(ctx context.Context, path string, r io.Reader, size int64, ifVersion string) (string, error) {
	start := time.Now()
	v, err := l.Driver.PutIf(ctx, path, r, size, ifVersion)
	l.done(ctx, "putif", path, start, err, slog.Int64("size", size), slog.String("if_version", ifVersion), slog.String("version", v))
	return v, err
}

func (l *logDriver) Delete(ctx context.Context, path string) error {
	start := time.Now()
	err := l.Driver.Delete(ctx, path)
	l.done(ctx, "delete", path, start, err)
	return err
}

func (l *logDriver) List(ctx context.Context, dir, after string, limit int) ([]Info, error) {
	start := time.Now()
	list, err := l.Driver.List(ctx, dir, after, limit)
	l.done(ctx, "list", dir, start, err, slog.Int("entries", len(list)))
	return list, err
}

func (l *logDriver) Copy(ctx context.Context, src, dst string) error {
	start := time.Now()
	err := l.Driver.Copy(ctx, src, dst)
	l.done(ctx, "copy", dst, start, err, slog.String("src", src))
	return err
}

func (l *logDriver) URL(ctx context.Context, path string, expiry time.Duration) (string, error) {
	start := time.Now()
	u, err := l.Driver.URL(ctx, path, expiry)
	l.done(ctx, "url", path, start, err)
	return u, err
}

// PurgeSessions implements SessionPurger by passing the call through.
func (l *logDriver) PurgeSessions(ctx context.Context, path string) error {
	start := time.Now()
	err := PurgeSessions(ctx, l.Driver, path)
	l.done(ctx, "purge sessions", path, start, err)
	return err
}

func (l *logDriver) Writer(ctx context.Context, path string, resume []byte) (Writer, error) {
	start := time.Now()
	w, err := l.Driver.Writer(ctx, path, resume)
	l.done(ctx, "writer", path, start, err, slog.Bool("resumed", resume != nil))
	if err != nil {
		return nil, err
	}
	lw := &logWriter{Writer: w, d: l, path: path}
	if _, ok := w.(CommitterTo); ok {
		return &logCommitterTo{lw}, nil
	}
	return lw, nil
}

type logWriter struct {
	Writer
	d    *logDriver
	path string
}

func (w *logWriter) State(ctx context.Context) ([]byte, error) {
	start := time.Now()
	s, err := w.Writer.State(ctx)
	w.d.done(ctx, "writer state", w.path, start, err, slog.Int64("size", w.Size()))
	return s, err
}

func (w *logWriter) Commit(ctx context.Context) error {
	start := time.Now()
	err := w.Writer.Commit(ctx)
	w.d.done(ctx, "writer commit", w.path, start, err, slog.Int64("size", w.Size()))
	return err
}

func (w *logWriter) Abort(ctx context.Context) error {
	start := time.Now()
	err := w.Writer.Abort(ctx)
	w.d.done(ctx, "writer abort", w.path, start, err)
	return err
}

// logCommitterTo is a logWriter over a Writer that implements CommitterTo.
type logCommitterTo struct{ *logWriter }

func (w *logCommitterTo) CommitTo(ctx context.Context, dst string) (string, error) {
	start := time.Now()
	v, err := w.Writer.(CommitterTo).CommitTo(ctx, dst)
	w.d.done(ctx, "writer commit", dst, start, err, slog.Int64("size", w.Size()), slog.String("src", w.path))
	return v, err
}

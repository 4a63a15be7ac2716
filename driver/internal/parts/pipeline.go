package parts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/registryd/registryd/driver"
)

// ErrEnded is the error (wrapped in a *driver.PathError) of a Writer used after State,
// Commit or Abort ended it.
var ErrEnded = fmt.Errorf("writer already ended by State, Commit or Abort: %w", driver.ErrPreconditionFailed)

const (
	// firstBuffer is the capacity of a pipeline's first buffer when it has no size hint.
	firstBuffer = 32 << 10
	// DefaultSmall is the Options.Small the drivers use: a writer's buffer grows by
	// doubling up to 256 KiB outside the budget (like the copy buffer of the request
	// feeding it), so small objects never wait for the budget of a whole part.
	DefaultSmall = 256 << 10
)

// Options configure a Pipeline.
type Options struct {
	// Path names the writer's object in the pipeline's own errors.
	Path string
	// Base is the number of bytes the session held before this writer (a resumed
	// session's): Intake's Size counts them.
	Base int64
	// PartSize is the size of every part but the last (> 0).
	PartSize int64
	// Concurrency is how many parts upload in the background at once (>= 1).
	Concurrency int
	// Small is how large the first buffer may grow outside the budget (doubling from
	// 32 KiB) while no part has been sent; 0 takes a budgeted part buffer at once.
	Small int64
	// Before, if set, runs before part index (0 for the pipeline's first part) is handed
	// to Upload, with ctx the pipeline's background context; an error is returned by the
	// Write that filled the part, and nothing is sent. It is serialised with the
	// pipeline's other calls, so it may create the backend session lazily.
	Before func(ctx context.Context, index int64) error
	// Upload sends data as part index in the background, with ctx the pipeline's
	// background context. It must not keep data after it returns, and must return errors
	// the driver has classified (wrapped in a *driver.PathError).
	Upload func(ctx context.Context, index int64, data []byte) error
	// Abandon, if set, runs once when the pipeline's ctx ends before Drain, Close or
	// Abort ended it (a request that failed mid-stream): the writer is then unusable,
	// its buffer is back in the budget, and Abandon may discard what it created (Wait
	// tells when the uploads in flight are done).
	Abandon func()
}

// Pipeline buffers a writer's bytes in parts and uploads each full part in the
// background; the bytes short of a part stay in memory until Drain hands them to the
// writer. A full part is sent only when more bytes arrive, so Drain may hand back a full
// part (the writer decides whether that is its last part or its tail).
//
// Memory: every buffer larger than Options.Small is charged to the Budget, and held until
// its upload ends; a pipeline waits for budget only while it holds none, so writers
// sharing a budget take turns and never deadlock. Uploads: at most Options.Concurrency
// of one pipeline are in flight; the first failure is kept and returned by every later
// Write, ReadFrom and Drain.
//
// A Pipeline is used by one writer (not concurrently), except that its ctx may end at
// any time; the methods are safe against that.
type Pipeline struct {
	opts   Options
	budget *Budget

	ctx       context.Context // background: part uploads use it; cancelled by Abort and Close
	cancel    context.CancelFunc
	stopWatch func() bool
	slots     chan struct{} // one per upload in flight
	wg        sync.WaitGroup

	// mu serialises the writer's calls with the ctx watcher.
	mu      sync.Mutex
	ended   error  // non-nil once no more bytes are taken: ErrEnded or the ctx's cause
	buf     []byte // the part being filled
	charged int64  // budget held for buf
	hint    int64  // capacity of the first buffer, 0 for none
	parts   int64  // parts handed to Upload
	written int64  // bytes taken

	errMu sync.Mutex
	err   error // the first upload failure
}

// New returns a pipeline whose uploads run under ctx and whose buffers are charged to
// budget. When ctx ends before Drain, Abort or Close, the pipeline gives its buffer back
// and fails every later call with ctx's error.
func New(ctx context.Context, budget *Budget, opts Options) *Pipeline {
	p := &Pipeline{opts: opts, budget: budget, slots: make(chan struct{}, max(1, opts.Concurrency))}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.stopWatch = context.AfterFunc(ctx, p.abandon)
	return p
}

// SizeHint sets the capacity of the first buffer (at most a part) when the writer knows
// how many bytes will come, so the buffer is not grown step by step. Call it before the
// first Write.
func (p *Pipeline) SizeHint(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hint = min(n, p.opts.PartSize)
}

// Written is the number of bytes the pipeline has taken.
func (p *Pipeline) Written() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.written
}

// Parts is the number of full parts handed to Upload.
func (p *Pipeline) Parts() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parts
}

// Intake is the part of a driver.Writer that a Pipeline implements: Write, ReadFrom and
// Size. A driver's writer embeds the Intake of its pipeline.
type Intake struct{ p *Pipeline }

// Intake returns the pipeline's Intake.
func (p *Pipeline) Intake() Intake { return Intake{p} }

// Write implements driver.Writer: see Pipeline.Write.
func (in Intake) Write(b []byte) (int, error) { return in.p.Write(b) }

// ReadFrom implements io.ReaderFrom (so io.Copy fills the part buffers from its source
// directly): see Pipeline.ReadFrom.
func (in Intake) ReadFrom(r io.Reader) (int64, error) { return in.p.ReadFrom(r) }

// Size implements driver.Writer: the session's bytes, Options.Base and those the pipeline
// has taken.
func (in Intake) Size() int64 { return in.p.opts.Base + in.p.Written() }

// Write takes b, sending full parts as more bytes arrive.
func (p *Pipeline) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return 0, err
	}
	n := 0
	for len(b) > 0 {
		free, err := p.room()
		if err != nil {
			return n, err
		}
		c := copy(free, b)
		p.filled(c)
		n += c
		b = b[c:]
	}
	return n, nil
}

// ReadFrom implements io.ReaderFrom: it reads r to EOF straight into part buffers, so the
// bytes are not copied through a caller's buffer first. An error of r is returned as is.
func (p *Pipeline) ReadFrom(r io.Reader) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for {
		if err := p.usable(); err != nil {
			return n, err
		}
		free, err := p.room()
		if err != nil {
			return n, err
		}
		m, err := r.Read(free)
		p.filled(m)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Drain ends the pipeline's intake, waits for the uploads in flight (or ctx) and returns
// the bytes not sent (fewer than a part, or exactly one full part) and the first upload
// failure. The bytes stay valid until Close. A second Drain, or one after Abort, fails
// with ErrEnded; after the pipeline's ctx ended, with its error.
func (p *Pipeline) Drain(ctx context.Context) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended != nil {
		return nil, p.pathError(p.ended)
	}
	p.ended = ErrEnded
	p.stopWatch()
	if err := p.wait(ctx); err != nil {
		return nil, err
	}
	if err := p.firstErr(); err != nil {
		return nil, err
	}
	return p.buf, nil
}

// Abort stops the uploads in flight and waits for them (or ctx), and gives the buffer
// back. It fails with ErrEnded after Drain or Abort, but not after the pipeline's ctx
// ended (the writer may still discard what it created).
func (p *Pipeline) Abort(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if errors.Is(p.ended, ErrEnded) {
		return p.pathError(ErrEnded)
	}
	p.ended = ErrEnded
	p.stopWatch()
	p.cancel()
	p.release()
	return p.wait(ctx)
}

// Close ends the pipeline and gives its buffer back (the bytes Drain returned are invalid
// from then on); uploads still in flight are cancelled. It may be called more than once.
func (p *Pipeline) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended == nil {
		p.ended = ErrEnded
	}
	p.stopWatch()
	p.release()
	p.cancel()
}

// Wait waits for the uploads in flight, without a deadline.
func (p *Pipeline) Wait() { p.wg.Wait() }

// abandon runs when the pipeline's ctx ends.
func (p *Pipeline) abandon() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended != nil {
		return
	}
	// The cause of the pipeline's ctx, which may not be cancelled yet while its parent's
	// cancellation reaches the children: never leave ended nil here.
	p.ended = context.Cause(p.ctx)
	if p.ended == nil {
		p.ended = context.Canceled
	}
	p.release()
	if p.opts.Abandon != nil {
		p.opts.Abandon()
	}
}

// usable returns why the pipeline takes no more bytes, or nil. Called with mu held.
func (p *Pipeline) usable() error {
	if p.ended != nil {
		return p.pathError(p.ended)
	}
	return p.firstErr()
}

// room returns the free space of the buffer, growing it or sending a full part first.
// Called with mu held.
func (p *Pipeline) room() ([]byte, error) {
	for {
		if len(p.buf) < cap(p.buf) {
			return p.buf[len(p.buf):cap(p.buf)], nil
		}
		if int64(len(p.buf)) == p.opts.PartSize {
			if err := p.send(); err != nil {
				return nil, err
			}
			continue
		}
		if err := p.grow(); err != nil {
			return nil, err
		}
	}
}

// filled records that n bytes were put into the space room returned.
func (p *Pipeline) filled(n int) {
	p.buf = p.buf[:len(p.buf)+n]
	p.written += int64(n)
}

// grow replaces the full buffer, shorter than a part, by a larger one: the hinted size
// first, else double the size while no part was sent and it stays within Options.Small,
// else a whole part. Bytes beyond Options.Small are charged to the budget.
func (p *Pipeline) grow() error {
	size := p.opts.PartSize
	switch {
	case p.buf == nil && p.hint > 0:
		// The hint sizes the first buffer only: after a part is sent, whole parts.
		size, p.hint = p.hint, 0
	case p.parts == 0:
		if next := max(2*int64(cap(p.buf)), min(firstBuffer, p.opts.Small)); next > int64(cap(p.buf)) && next <= p.opts.Small && next < size {
			size = next
		}
	}
	var charge int64
	if size > p.opts.Small {
		charge = size
	}
	if charge > p.charged {
		if err := p.budget.Acquire(p.ctx, charge-p.charged); err != nil {
			return p.pathError(err)
		}
	} else {
		charge = p.charged // never give back less than is held
	}
	nb := append(p.budget.buffer(size), p.buf...)
	p.budget.free(p.buf, 0)
	p.buf, p.charged = nb, charge
	return nil
}

// send hands the full buffer to a background upload as the next part, waiting for a
// free upload slot. Called with mu held.
func (p *Pipeline) send() error {
	if p.opts.Before != nil {
		if err := p.opts.Before(p.ctx, p.parts); err != nil {
			return err
		}
	}
	select {
	case p.slots <- struct{}{}:
	case <-p.ctx.Done():
		return p.pathError(context.Cause(p.ctx))
	}
	index, buf, charged := p.parts, p.buf, p.charged
	p.parts++
	p.buf, p.charged = nil, 0
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := p.opts.Upload(p.ctx, index, buf)
		p.budget.free(buf, charged)
		<-p.slots
		if err != nil {
			p.errMu.Lock()
			if p.err == nil {
				p.err = err
			}
			p.errMu.Unlock()
		}
	}()
	return nil
}

// release gives the buffer back to the budget. Called with mu held.
func (p *Pipeline) release() {
	if p.buf != nil {
		p.budget.free(p.buf, p.charged)
		p.buf, p.charged = nil, 0
	}
}

// wait waits for the uploads in flight, or until ctx ends.
func (p *Pipeline) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return p.pathError(err)
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return p.pathError(ctx.Err())
	}
}

func (p *Pipeline) firstErr() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

// pathError wraps err in a *driver.PathError for the writer's path unless it is one.
func (p *Pipeline) pathError(err error) error { return WithPath("write", p.opts.Path, err) }

// WithPath returns err wrapped in a *driver.PathError for op on path, or err itself when
// it is one already (or nil).
func WithPath(op, path string, err error) error {
	if _, ok := errors.AsType[*driver.PathError](err); ok || err == nil {
		return err
	}
	return &driver.PathError{Op: op, Path: path, Err: err}
}

// Errorf returns a *driver.PathError for op on path whose Err is fmt.Errorf(format,
// args...).
func Errorf(op, path, format string, args ...any) error {
	return &driver.PathError{Op: op, Path: path, Err: fmt.Errorf(format, args...)}
}

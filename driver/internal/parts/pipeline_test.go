package parts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registryd/registryd/driver"
)

// recorder is an Upload that keeps every part and tracks how many run at once.
type recorder struct {
	mu       sync.Mutex
	parts    map[int64][]byte
	inFlight atomic.Int64
	peak     atomic.Int64
	delay    time.Duration
	fail     map[int64]error // part index → error to return (after delay)
}

func (r *recorder) upload(ctx context.Context, i int64, data []byte) error {
	n := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		p := r.peak.Load()
		if n <= p || r.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-time.After(r.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := r.fail[i]; err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.parts == nil {
		r.parts = map[int64][]byte{}
	}
	r.parts[i] = bytes.Clone(data)
	return nil
}

// joined returns parts 0..n-1 concatenated.
func (r *recorder) joined(n int64) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b []byte
	for i := range n {
		b = append(b, r.parts[i]...)
	}
	return b
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// oneByte hands out at most one byte per Read.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(b []byte) (int, error) { return o.r.Read(b[:min(len(b), 1)]) }

func TestPipeline(t *testing.T) {
	const part = 1000
	cases := []struct {
		name       string
		size       int
		chunk      int  // Write size; 0: ReadFrom
		oneByte    bool // ReadFrom a reader giving one byte per Read
		small      int64
		hint       int64
		wantParts  int64
		wantTail   int
		concurrent int
	}{
		{name: "empty", size: 0, chunk: 10, wantParts: 0, wantTail: 0, concurrent: 2},
		{name: "less than a part", size: 999, chunk: 100, wantParts: 0, wantTail: 999, concurrent: 2},
		{name: "exactly a part is kept", size: part, chunk: 7, wantParts: 0, wantTail: part, concurrent: 2},
		{name: "a part and a byte", size: part + 1, chunk: part + 1, wantParts: 1, wantTail: 1, concurrent: 1},
		{name: "many parts", size: 10*part + 5, chunk: 333, wantParts: 10, wantTail: 5, concurrent: 3},
		{name: "many parts exact", size: 10 * part, chunk: 333, wantParts: 9, wantTail: part, concurrent: 3},
		{name: "ReadFrom", size: 7*part + 3, wantParts: 7, wantTail: 3, concurrent: 2},
		{name: "ReadFrom one byte at a time", size: 2*part + 3, oneByte: true, wantParts: 2, wantTail: 3, concurrent: 2},
		{name: "small growth", size: 3*part + 1, chunk: 50, small: 400, wantParts: 3, wantTail: 1, concurrent: 2},
		{name: "hint", size: 300, chunk: 0, hint: 301, wantParts: 0, wantTail: 300, concurrent: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{delay: time.Millisecond}
			budget := NewBudget(2*part, part)
			p := New(context.Background(), budget, Options{Path: "p", PartSize: part, Concurrency: c.concurrent, Small: c.small, Upload: rec.upload})
			if c.hint > 0 {
				p.SizeHint(c.hint)
			}
			data := pattern(c.size)
			switch {
			case c.chunk == 0 && c.oneByte:
				if n, err := p.ReadFrom(oneByte{bytes.NewReader(data)}); err != nil || n != int64(c.size) {
					t.Fatalf("ReadFrom: %d, %v", n, err)
				}
			case c.chunk == 0:
				if n, err := p.ReadFrom(bytes.NewReader(data)); err != nil || n != int64(c.size) {
					t.Fatalf("ReadFrom: %d, %v", n, err)
				}
			default:
				for b := data; len(b) > 0; b = b[min(len(b), c.chunk):] {
					if n, err := p.Write(b[:min(len(b), c.chunk)]); err != nil || n != min(len(b), c.chunk) {
						t.Fatalf("Write: %d, %v", n, err)
					}
				}
			}
			if p.Written() != int64(c.size) {
				t.Errorf("Written %d, want %d", p.Written(), c.size)
			}
			tail, err := p.Drain(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if p.Parts() != c.wantParts || len(tail) != c.wantTail {
				t.Errorf("%d parts and a tail of %d, want %d and %d", p.Parts(), len(tail), c.wantParts, c.wantTail)
			}
			if got := append(rec.joined(p.Parts()), tail...); !bytes.Equal(got, data) {
				t.Error("parts and tail differ from the bytes written")
			}
			if peak := rec.peak.Load(); peak > int64(c.concurrent) {
				t.Errorf("%d uploads at once, want at most %d", peak, c.concurrent)
			}
			p.Close()
			if _, err := p.Write([]byte("x")); !errors.Is(err, ErrEnded) {
				t.Errorf("Write after Close: %v", err)
			}
			if _, err := p.Drain(context.Background()); !errors.Is(err, ErrEnded) {
				t.Errorf("Drain after Drain: %v", err)
			}
			if !budget.TryAcquire(2 * part) {
				t.Error("budget not fully returned")
			}
		})
	}
}

// TestBudgetShared: pipelines sharing a budget of two parts never hold more than it, and
// all finish.
func TestBudgetShared(t *testing.T) {
	const part = 4096
	budget := NewBudget(2*part, part)
	// Every upload in flight holds a part of the budget, so no more than two run at once
	// across all pipelines.
	var inFlight, peak atomic.Int64
	upload := func(ctx context.Context, i int64, data []byte) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		if n > peak.Load() {
			peak.Store(n)
		}
		time.Sleep(time.Millisecond)
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := New(context.Background(), budget, Options{Path: "p", PartSize: part, Concurrency: 4, Upload: upload})
			defer p.Close()
			for range 20 {
				if _, err := p.Write(pattern(part / 2)); err != nil {
					errs[i] = err
					return
				}
			}
			_, errs[i] = p.Drain(context.Background())
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("pipelines sharing a budget are stuck")
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("pipeline %d: %v", i, err)
		}
	}
	if peak.Load() > 2 {
		t.Errorf("%d uploads held part buffers at once, the budget admits 2", peak.Load())
	}
	if !budget.TryAcquire(2 * part) {
		t.Error("budget not fully returned")
	}
}

// TestBudgetBlocks: a pipeline needing a part buffer waits while the budget is taken,
// and its ctx ends the wait.
func TestBudgetBlocks(t *testing.T) {
	const part = 100
	budget := NewBudget(part, part)
	if !budget.TryAcquire(part) {
		t.Fatal("fresh budget not free")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p := New(ctx, budget, Options{Path: "p", PartSize: part, Concurrency: 1, Upload: (&recorder{}).upload})
	_, err := p.Write([]byte("x"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write with the budget taken: %v", err)
	}
	budget.Release(part)
	// Small buffers do not wait for the budget.
	budget.TryAcquire(part)
	q := New(context.Background(), budget, Options{Path: "p", PartSize: part, Concurrency: 1, Small: 64, Upload: (&recorder{}).upload})
	defer q.Close()
	if _, err := q.Write(pattern(64)); err != nil {
		t.Fatalf("small Write with the budget taken: %v", err)
	}
	budget.Release(part)
}

func TestFirstErrorKept(t *testing.T) {
	const part = 10
	first := fmt.Errorf("part 1: %w", driver.ErrUnavailable)
	rec := &recorder{fail: map[int64]error{1: first, 3: errors.New("later")}}
	p := New(context.Background(), NewBudget(10*part, part), Options{Path: "p", PartSize: part, Concurrency: 1, Upload: rec.upload})
	defer p.Close()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = p.Write(pattern(part))
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, first) {
		t.Fatalf("Write after a failed upload: %v, want the first failure", err)
	}
	if _, err := p.ReadFrom(bytes.NewReader(pattern(5))); !errors.Is(err, first) {
		t.Errorf("ReadFrom after a failed upload: %v", err)
	}
	if _, err := p.Drain(context.Background()); !errors.Is(err, first) {
		t.Errorf("Drain after a failed upload: %v", err)
	}
}

// TestAbandon: when the ctx ends, the buffer returns to the budget, Abandon runs once,
// later calls fail with the ctx's error, and Abort still works.
func TestAbandon(t *testing.T) {
	const part = 100
	budget := NewBudget(part, part)
	ctx, cancel := context.WithCancel(context.Background())
	abandoned := make(chan struct{}, 2)
	p := New(ctx, budget, Options{Path: "p", PartSize: part, Concurrency: 1, Upload: (&recorder{}).upload,
		Abandon: func() { abandoned <- struct{}{} }})
	if _, err := p.Write(pattern(50)); err != nil {
		t.Fatal(err)
	}
	if budget.TryAcquire(1) {
		t.Fatal("the buffer holds no budget")
	}
	cancel()
	select {
	case <-abandoned:
	case <-time.After(5 * time.Second):
		t.Fatal("Abandon did not run")
	}
	if !budget.TryAcquire(part) {
		t.Fatal("budget not returned after the ctx ended")
	}
	budget.Release(part)
	if _, err := p.Write([]byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Write after the ctx ended: %v", err)
	}
	if _, err := p.Drain(context.Background()); !errors.Is(err, context.Canceled) {
		t.Errorf("Drain after the ctx ended: %v", err)
	}
	if err := p.Abort(context.Background()); err != nil {
		t.Errorf("Abort after the ctx ended: %v", err)
	}
	if err := p.Abort(context.Background()); !errors.Is(err, ErrEnded) {
		t.Errorf("second Abort: %v", err)
	}
	if len(abandoned) != 0 {
		t.Error("Abandon ran twice")
	}
}

// TestAbortStopsUploads: Abort cancels the uploads in flight and waits for them.
func TestAbortStopsUploads(t *testing.T) {
	const part = 10
	rec := &recorder{delay: time.Hour}
	budget := NewBudget(4*part, part)
	p := New(context.Background(), budget, Options{Path: "p", PartSize: part, Concurrency: 2, Upload: rec.upload})
	if _, err := p.Write(pattern(2*part + 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.Abort(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := rec.inFlight.Load(); n != 0 {
		t.Errorf("%d uploads still running after Abort", n)
	}
	if !budget.TryAcquire(4 * part) {
		t.Error("budget not returned after Abort")
	}
}

// TestBefore: Before runs before each part, in order, and its error stops the part.
func TestBefore(t *testing.T) {
	const part = 10
	stop := fmt.Errorf("too many parts: %w", driver.ErrMisconfigured)
	var seen []int64
	rec := &recorder{}
	p := New(context.Background(), NewBudget(4*part, part), Options{Path: "p", PartSize: part, Concurrency: 2, Upload: rec.upload,
		Before: func(_ context.Context, i int64) error {
			seen = append(seen, i)
			if i == 2 {
				return stop
			}
			return nil
		}})
	defer p.Close()
	_, err := p.Write(pattern(5 * part))
	if !errors.Is(err, stop) {
		t.Fatalf("Write: %v", err)
	}
	if fmt.Sprint(seen) != "[0 1 2]" || p.Parts() != 2 {
		t.Errorf("Before saw %v, %d parts sent", seen, p.Parts())
	}
}

// TestIntake: a writer's Size counts the session's earlier bytes (Options.Base) and those
// taken by Write and ReadFrom.
func TestIntake(t *testing.T) {
	var r recorder
	p := New(context.Background(), NewBudget(1<<20, 64), Options{Path: "x", Base: 1000, PartSize: 64, Concurrency: 2, Upload: r.upload})
	defer p.Close()
	in := p.Intake()
	if _, err := in.Write(pattern(100)); err != nil {
		t.Fatal(err)
	}
	if _, err := in.ReadFrom(oneByte{bytes.NewReader(pattern(50))}); err != nil {
		t.Fatal(err)
	}
	if got := in.Size(); got != 1150 {
		t.Errorf("Size = %d, want 1150", got)
	}
}

// TestWithPath: an error is wrapped in a *driver.PathError once; nil stays nil.
func TestWithPath(t *testing.T) {
	if WithPath("write", "p", nil) != nil {
		t.Error("nil wrapped")
	}
	once := WithPath("write", "p", driver.ErrUnavailable)
	if twice := WithPath("commit", "q", once); twice != once { //nolint:errorlint // the very same value must come back
		t.Errorf("wrapped again: %v", twice)
	}
	pe, ok := errors.AsType[*driver.PathError](Errorf("state", "p", "%w: %d", driver.ErrNotFound, 3))
	if !ok || pe.Op != "state" || pe.Path != "p" || !errors.Is(pe, driver.ErrNotFound) {
		t.Errorf("Errorf = %#v", pe)
	}
}

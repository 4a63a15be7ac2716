package driver_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/fault"
	"github.com/registryd/registryd/driver/inmemory"
)

// fastRetry retries without sleeping long: the tests count attempts, not time.
var fastRetry = driver.RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}

type retryOp struct {
	method string
	run    func(ctx context.Context, d driver.Driver) error
	// passErr is the error the call returns when it reaches the backend (nil: success).
	passErr error
}

// retryOps are the retried calls, each on objects seeded by newRetryStack.
var retryOps = []retryOp{
	{fault.Stat, func(ctx context.Context, d driver.Driver) error {
		fi, err := d.Stat(ctx, "r/obj")
		if err == nil && fi.Size != 5 {
			return errors.New("wrong size")
		}
		return err
	}, nil},
	{fault.Reader, func(ctx context.Context, d driver.Driver) error {
		rc, err := d.Reader(ctx, "r/obj", 1, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err == nil && string(b) != "ello" {
			return errors.New("wrong bytes " + string(b))
		}
		return err
	}, nil},
	{fault.List, func(ctx context.Context, d driver.Driver) error {
		l, err := d.List(ctx, "r", "", 0)
		if err == nil && len(l) != 1 {
			return errors.New("wrong listing")
		}
		return err
	}, nil},
	{fault.Put, func(ctx context.Context, d driver.Driver) error {
		return d.Put(ctx, "r/put", strings.NewReader("put body"), 8)
	}, nil},
	{fault.PutIf, func(ctx context.Context, d driver.Driver) error {
		v, err := d.PutIf(ctx, "r/putif", strings.NewReader("putif body"), 10, "")
		if err == nil && v == "" {
			return errors.New("no version")
		}
		return err
	}, nil},
	{fault.Delete, func(ctx context.Context, d driver.Driver) error {
		return d.Delete(ctx, "r/obj")
	}, nil},
	{fault.Copy, func(ctx context.Context, d driver.Driver) error {
		return d.Copy(ctx, "r/obj", "r/copy")
	}, nil},
	{fault.URL, func(ctx context.Context, d driver.Driver) error {
		_, err := d.URL(ctx, "r/obj", time.Minute)
		return err
	}, driver.ErrUnsupported},
}

func newRetryStack(t *testing.T, p driver.RetryPolicy) (*fault.Driver, driver.Driver) {
	t.Helper()
	in := inmemory.New()
	if err := in.Put(context.Background(), "r/obj", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	f := fault.New(in)
	return f, driver.WithRetry(f, p)
}

func TestRetryTable(t *testing.T) {
	for _, o := range retryOps {
		for _, tc := range []struct {
			name     string
			class    error
			times    int // consecutive failures injected (0: always)
			wantErr  error
			attempts int
		}{
			{"throttled twice", driver.ErrThrottled, 2, o.passErr, 3},
			{"unavailable three times", driver.ErrUnavailable, 3, o.passErr, 4},
			{"throttled always", driver.ErrThrottled, 0, driver.ErrThrottled, 4},
			{"unavailable always", driver.ErrUnavailable, 0, driver.ErrUnavailable, 4},
			{"not found", driver.ErrNotFound, 1, driver.ErrNotFound, 1},
			{"permission", driver.ErrPermission, 1, driver.ErrPermission, 1},
			{"misconfigured", driver.ErrMisconfigured, 1, driver.ErrMisconfigured, 1},
			{"precondition", driver.ErrPreconditionFailed, 1, driver.ErrPreconditionFailed, 1},
			{"invalid path", driver.ErrInvalidPath, 1, driver.ErrInvalidPath, 1},
			{"deadline", context.DeadlineExceeded, 1, context.DeadlineExceeded, 1},
		} {
			t.Run(o.method+"/"+tc.name, func(t *testing.T) {
				f, d := newRetryStack(t, fastRetry)
				f.Add(fault.Rule{Methods: []string{o.method}, Err: tc.class, Times: tc.times})
				err := o.run(context.Background(), d)
				if tc.wantErr == nil && err != nil {
					t.Fatalf("got %v, want success after retries", err)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				if got := f.Calls(o.method); got != tc.attempts {
					t.Fatalf("%d attempts, want %d", got, tc.attempts)
				}
			})
		}
	}
}

// TestRetryDisabled: MaxAttempts 1 (or 0) returns the driver itself: one attempt.
func TestRetryDisabled(t *testing.T) {
	for _, n := range []int{0, 1} {
		f, d := newRetryStack(t, driver.RetryPolicy{MaxAttempts: n})
		if d != driver.Driver(f) {
			t.Fatalf("MaxAttempts %d: wrapped", n)
		}
	}
}

// TestRetryPutNeedsSeeker: a body that cannot be rewound is sent once.
func TestRetryPutNeedsSeeker(t *testing.T) {
	f, d := newRetryStack(t, fastRetry)
	f.Add(fault.Rule{Methods: []string{fault.Put}, Err: driver.ErrThrottled, Times: 1})
	body := struct{ io.Reader }{strings.NewReader("once")}
	if err := d.Put(context.Background(), "r/x", body, 4); !errors.Is(err, driver.ErrThrottled) {
		t.Fatalf("got %v, want the first failure", err)
	}
	if n := f.Calls(fault.Put); n != 1 {
		t.Fatalf("%d attempts with a non-seekable body", n)
	}
}

// flaky consumes Put's body (or performs Delete) and then reports a transient failure,
// like a backend whose response was lost after it acted.
type flaky struct {
	driver.Driver
	puts, deletes atomic.Int32
}

func (f *flaky) Put(ctx context.Context, p string, r io.Reader, n int64) error {
	if f.puts.Add(1) == 1 {
		_, _ = io.Copy(io.Discard, io.LimitReader(r, 3))
		return &driver.PathError{Op: "put", Path: p, Err: driver.ErrUnavailable}
	}
	return f.Driver.Put(ctx, p, r, n)
}

func (f *flaky) Delete(ctx context.Context, p string) error {
	err := f.Driver.Delete(ctx, p)
	if f.deletes.Add(1) == 1 && err == nil {
		return &driver.PathError{Op: "delete", Path: p, Err: driver.ErrUnavailable}
	}
	return err
}

// TestRetryPutRewinds: a retried Put sends the whole body again, from where it started.
func TestRetryPutRewinds(t *testing.T) {
	ctx := context.Background()
	in := inmemory.New()
	d := driver.WithRetry(&flaky{Driver: in}, fastRetry)
	body := bytes.NewReader([]byte("skip:the whole body"))
	if _, err := body.Seek(5, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, "r/p", body, 14); err != nil {
		t.Fatal(err)
	}
	rc, err := in.Reader(ctx, "r/p", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "the whole body" {
		t.Fatalf("stored %q after a retried Put", got)
	}
}

// TestRetryDeleteLostResponse: NotFound on a retry after a failed Delete is success; on
// the first attempt it is not.
func TestRetryDeleteLostResponse(t *testing.T) {
	ctx := context.Background()
	in := inmemory.New()
	if err := in.Put(ctx, "r/d", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	d := driver.WithRetry(&flaky{Driver: in}, fastRetry)
	if err := d.Delete(ctx, "r/d"); err != nil {
		t.Fatalf("delete whose first response was lost: %v", err)
	}
	if _, err := in.Stat(ctx, "r/d"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("object still there: %v", err)
	}
	if err := d.Delete(ctx, "r/never"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("delete of a missing object: %v, want ErrNotFound", err)
	}
}

// TestRetryWriterPassesThrough: write sessions are never retried.
func TestRetryWriterPassesThrough(t *testing.T) {
	ctx := context.Background()
	for _, m := range []string{fault.Writer, fault.Write, fault.State, fault.Commit, fault.Abort} {
		f, d := newRetryStack(t, fastRetry)
		f.Add(fault.Rule{Methods: []string{m}, Err: driver.ErrThrottled, Times: 1})
		err := func() error {
			w, err := d.Writer(ctx, "r/w", nil)
			if err != nil {
				return err
			}
			if _, err := w.Write([]byte("abc")); err != nil {
				return err
			}
			if m == fault.Abort {
				return w.Abort(ctx)
			}
			if m == fault.State {
				_, err := w.State(ctx)
				return err
			}
			return w.Commit(ctx)
		}()
		if !errors.Is(err, driver.ErrThrottled) || f.Calls(m) != 1 {
			t.Errorf("%s: %v after %d calls, want the first failure", m, err, f.Calls(m))
		}
	}
}

// TestRetryHonoursContext: a cancelled or expiring context ends the backoff at once.
func TestRetryHonoursContext(t *testing.T) {
	slow := driver.RetryPolicy{MaxAttempts: 10, BaseDelay: time.Hour, MaxDelay: time.Hour}
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, d := newRetryStack(t, slow)
			f.Fail(driver.ErrUnavailable)
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			_, err := d.Stat(ctx, "r/obj")
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("returned after %v", el)
			}
			if n := f.Calls(fault.Stat); n < 1 || n > 2 {
				t.Fatalf("%d attempts", n)
			}
		})
	}
}

// TestBackoff: full jitter within [0, min(base·2^(n-1), max)), and not constant.
func TestBackoff(t *testing.T) {
	p := driver.RetryPolicy{MaxAttempts: 10, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	rnd := rand.New(rand.NewPCG(1, 2))
	for retry, ceiling := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		seen := map[time.Duration]bool{}
		var maxSeen time.Duration
		for range 200 {
			b := p.Backoff(retry, rnd)
			if b < 0 || b >= ceiling {
				t.Fatalf("retry %d: backoff %v outside [0, %v)", retry, b, ceiling)
			}
			seen[b] = true
			maxSeen = max(maxSeen, b)
		}
		if len(seen) < 100 || maxSeen < ceiling/2 {
			t.Fatalf("retry %d: %d distinct values up to %v: no jitter", retry, len(seen), maxSeen)
		}
	}
	if b := (driver.RetryPolicy{MaxAttempts: 3}).Backoff(2, rnd); b != 0 {
		t.Fatalf("zero BaseDelay: %v", b)
	}
	if b := (driver.RetryPolicy{MaxAttempts: 100, BaseDelay: time.Hour}).Backoff(99, rnd); b < 0 {
		t.Fatalf("uncapped backoff overflowed: %v", b)
	}
}

// TestRetryPolicyDo: Do stops at the first success, at an answer that is not transient, or
// after MaxAttempts attempts, and returns the last error.
func TestRetryPolicyDo(t *testing.T) {
	notFound := errors.Join(driver.ErrNotFound, errors.New("gone"))
	for _, tc := range []struct {
		name  string
		fails []error // the error of attempt i+1; nil beyond
		want  error
		calls int
	}{
		{"first attempt succeeds", nil, nil, 1},
		{"succeeds on the third", []error{driver.ErrUnavailable, driver.ErrThrottled}, nil, 3},
		{"not transient", []error{driver.ErrUnavailable, notFound}, driver.ErrNotFound, 2},
		{"attempts spent", []error{driver.ErrUnavailable, driver.ErrUnavailable, driver.ErrUnavailable, driver.ErrThrottled}, driver.ErrThrottled, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := fastRetry.Do(context.Background(), func(attempt int) error {
				calls++
				if attempt != calls {
					t.Errorf("attempt %d on call %d", attempt, calls)
				}
				if attempt <= len(tc.fails) {
					return tc.fails[attempt-1]
				}
				return nil
			})
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if calls != tc.calls {
				t.Errorf("%d calls, want %d", calls, tc.calls)
			}
		})
	}
	t.Run("context ends in the backoff", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		slow := driver.RetryPolicy{MaxAttempts: 10, BaseDelay: time.Hour, MaxDelay: time.Hour}
		err := slow.Do(ctx, func(int) error { return driver.ErrUnavailable })
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), driver.ErrUnavailable.Error()) {
			t.Errorf("err = %v, want the deadline naming the last failure", err)
		}
	})
}

// TestRetryPutIfLostAnswer: a PutIf whose first answer is lost after the backend applied
// it is retried, and the retry's ErrPreconditionFailed says that an earlier attempt may
// have stored the object; the object is the caller's, as reading it back shows.
func TestRetryPutIfLostAnswer(t *testing.T) {
	f, d := newRetryStack(t, fastRetry)
	f.Add(fault.Rule{Methods: []string{fault.PutIf}, Lost: true, Err: driver.ErrUnavailable, Times: 1})
	ctx := context.Background()
	_, err := d.PutIf(ctx, "r/lease", strings.NewReader("holder-a"), 8, "")
	if !errors.Is(err, driver.ErrPreconditionFailed) || !strings.Contains(err.Error(), "earlier attempt") {
		t.Fatalf("retried PutIf after a lost answer: %v", err)
	}
	if n := f.Calls(fault.PutIf); n != 2 {
		t.Fatalf("%d PutIf attempts, want 2", n)
	}
	rc, err := d.Reader(ctx, "r/lease", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "holder-a" {
		t.Fatalf("object holds %q", b)
	}
	// A body that cannot be rewound is sent once.
	f.Add(fault.Rule{Methods: []string{fault.PutIf}, Err: driver.ErrThrottled, Times: 1})
	f.ResetCounts()
	if _, err := d.PutIf(ctx, "r/other", io.MultiReader(strings.NewReader("x")), 1, ""); !errors.Is(err, driver.ErrThrottled) {
		t.Fatalf("PutIf with an unseekable body: %v", err)
	}
	if n := f.Calls(fault.PutIf); n != 1 {
		t.Fatalf("%d PutIf attempts with an unseekable body, want 1", n)
	}
}

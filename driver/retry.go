package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds the retries of WithRetry.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts of a call, the first included; values
	// below 2 disable retries.
	MaxAttempts int
	// BaseDelay is the backoff cap before the first retry; it doubles for each further
	// retry. The actual sleep is drawn uniformly from [0, cap) ("full jitter"). Zero
	// retries without sleeping.
	BaseDelay time.Duration
	// MaxDelay caps a single backoff (zero: no cap beyond the doubling of BaseDelay).
	MaxDelay time.Duration
}

// Backoff returns the jittered sleep before retry number retry (1 for the first retry):
// uniform in [0, min(BaseDelay·2^(retry-1), MaxDelay)), drawn from rnd.
func (p RetryPolicy) Backoff(retry int, rnd *rand.Rand) time.Duration {
	ceiling := p.BaseDelay
	for i := 1; i < retry && ceiling > 0; i++ {
		if p.MaxDelay > 0 && ceiling >= p.MaxDelay {
			break
		}
		if ceiling > (1<<62)/2 { // doubling would overflow
			break
		}
		ceiling *= 2
	}
	if p.MaxDelay > 0 && ceiling > p.MaxDelay {
		ceiling = p.MaxDelay
	}
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rnd.Int64N(int64(ceiling)))
}

// errRetryEnded marks the error of Do when ctx ended before the next attempt.
var errRetryEnded = errors.New("gave up retrying")

// Do runs f (attempt counts from 1) until it succeeds, fails with an error that is not
// Retryable, or p.MaxAttempts attempts are spent, sleeping p.Backoff between attempts, and
// returns f's last error. When ctx ends before the next attempt, Do returns at once with an
// error wrapping ctx.Err() that names the attempts made and the last failure. The jitter
// source is created on the first retry and belongs to this call.
func (p RetryPolicy) Do(ctx context.Context, f func(attempt int) error) error {
	var rnd *rand.Rand
	for attempt := 1; ; attempt++ {
		err := f(attempt)
		if err == nil || !Retryable(err) || attempt >= p.MaxAttempts {
			return err
		}
		ended := func() error {
			// The last failure is context: the call ended because ctx did, and must not
			// read as that failure (as ErrUnavailable, say).
			return fmt.Errorf("%w: %w (after %d attempts, last: %v)", errRetryEnded, ctx.Err(), attempt, err) //nolint:errorlint // see above
		}
		if ctx.Err() != nil {
			return ended()
		}
		if rnd == nil {
			rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		}
		if wait := p.Backoff(attempt, rnd); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ended()
			case <-t.C:
			}
		}
	}
}

// Retryable reports whether err is a transient backend failure worth retrying: it wraps
// ErrThrottled or ErrUnavailable and none of the definite answers (ErrNotFound,
// ErrPermission, ErrMisconfigured, ErrPreconditionFailed, ErrInvalidPath, ErrUnsupported)
// nor a context error.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	for _, final := range []error{ErrNotFound, ErrPermission, ErrMisconfigured, ErrPreconditionFailed,
		ErrInvalidPath, ErrUnsupported, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, final) {
			return false
		}
	}
	return errors.Is(err, ErrThrottled) || errors.Is(err, ErrUnavailable)
}

// WithRetry returns a Driver that retries d's idempotent calls when they fail with
// ErrThrottled or ErrUnavailable (see Retryable), up to p.MaxAttempts attempts with
// exponential backoff and full jitter, honouring ctx: when ctx ends during a backoff the
// call returns at once with an error wrapping ctx.Err().
//
// Retried: Stat, Reader (opening the stream; a stream that fails mid-body is the caller's
// to resume with a ranged read), List, Copy, URL, Put and PutIf when their reader is an
// io.Seeker (it is rewound to where it started; any other reader is tried once; for PutIf
// see the retry caveat of Driver.PutIf), and Delete, where
// ErrNotFound on a retry after a failed attempt counts as success (the failed attempt may
// have deleted the object). Writer and its operations are passed through: a write
// session's bytes cannot be replayed here. With p.MaxAttempts < 2, d itself is returned.
//
// One retry layer: the context WithRetry passes to d for a call it retries is marked
// (RetriedByCaller), and the backend drivers (s3, gcs, azure) then make each backend
// request of that call once, with their SDK's retries off. Requests of calls WithRetry
// does not retry (Writer operations, a Put whose body cannot be rewound) are retried
// inside the driver, by the SDK or, for GCS writer uploads and composes, which its client
// does not retry, by a loop of the driver around requests the client tries once; the
// driver is given the same policy (s3.Options.Retry, gcs.Options.Retry, azure.ClientOptions). That is the one
// exception to WithRetry being the only layer, and it cannot multiply attempts: WithRetry
// never retries those calls. Either way a backend request is made at most p.MaxAttempts
// times, with at most p.MaxAttempts-1 backoffs of at most min(BaseDelay·2^(n-1), MaxDelay)
// each (Azure's SDK uses its own jitter, 0.8 to 1.3 times (2^n-1)·BaseDelay, capped at
// MaxDelay, for the requests it retries).
func WithRetry(d Driver, p RetryPolicy) Driver {
	if p.MaxAttempts < 2 {
		return d
	}
	return &retryDriver{Driver: d, p: p}
}

// retriedKey marks a context passed by WithRetry to the wrapped driver.
type retriedKey struct{}

// RetriedByCaller reports whether ctx comes from a call that WithRetry retries: a driver
// must then try each backend request once, so that attempts never multiply. Calls with
// any other context (Writer operations, which WithRetry passes through, and calls on an
// unwrapped driver) are the driver's to retry, with the same RetryPolicy values.
func RetriedByCaller(ctx context.Context) bool {
	v, _ := ctx.Value(retriedKey{}).(bool)
	return v
}

// DefaultRetryPolicy returns the policy of storage.retry's defaults: 4 attempts, 100ms
// base delay, 2s cap.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 4, BaseDelay: 100 * time.Millisecond, MaxDelay: 2 * time.Second}
}

type retryDriver struct {
	Driver // Name and Writer pass through
	p      RetryPolicy
}

// do runs op under Do with a context marked RetriedByCaller.
func (r *retryDriver) do(ctx context.Context, name, path string, op func(ctx context.Context, attempt int) error) error {
	inner := context.WithValue(ctx, retriedKey{}, true)
	err := r.p.Do(ctx, func(attempt int) error { return op(inner, attempt) })
	if errors.Is(err, errRetryEnded) {
		return &PathError{Op: name, Path: path, Err: err}
	}
	return err
}

func (r *retryDriver) Stat(ctx context.Context, path string) (Info, error) {
	var fi Info
	err := r.do(ctx, "stat", path, func(ctx context.Context, _ int) error {
		var err error
		fi, err = r.Driver.Stat(ctx, path)
		return err
	})
	return fi, err
}

func (r *retryDriver) Reader(ctx context.Context, path string, offset, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := r.do(ctx, "reader", path, func(ctx context.Context, _ int) error {
		var err error
		rc, err = r.Driver.Reader(ctx, path, offset, length)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rc, nil
}

func (r *retryDriver) Put(ctx context.Context, path string, body io.Reader, size int64) error {
	return r.rewinding(ctx, "put", path, body, func(ctx context.Context, _ int) error {
		return r.Driver.Put(ctx, path, body, size)
	})
}

// PutIf retries like Put (only when body is an io.Seeker, rewound for each attempt). An
// attempt that failed may have been applied by the backend, so ErrPreconditionFailed on a
// retry does not prove that another writer won: the error then says so, and the caller
// reads the object back when it must know (see Driver.PutIf).
func (r *retryDriver) PutIf(ctx context.Context, path string, body io.Reader, size int64, ifVersion string) (string, error) {
	var version string
	err := r.rewinding(ctx, "putif", path, body, func(ctx context.Context, attempt int) error {
		var err error
		version, err = r.Driver.PutIf(ctx, path, body, size, ifVersion)
		if attempt > 1 && errors.Is(err, ErrPreconditionFailed) {
			err = fmt.Errorf("%w (on attempt %d: an earlier attempt that failed may have stored the object)", err, attempt)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	return version, nil
}

// rewinding runs call, a write that reads body, under the retry policy when body is an
// io.Seeker whose position is known, rewinding it to where it started before each retry;
// any other body is written once (call gets attempt 1).
func (r *retryDriver) rewinding(ctx context.Context, op, path string, body io.Reader, call func(ctx context.Context, attempt int) error) error {
	s, ok := body.(io.Seeker)
	if !ok {
		return call(ctx, 1)
	}
	start, err := s.Seek(0, io.SeekCurrent)
	if err != nil {
		return call(ctx, 1)
	}
	var rewindErr error
	err = r.do(ctx, op, path, func(ctx context.Context, attempt int) error {
		if attempt > 1 {
			if _, err := s.Seek(start, io.SeekStart); err != nil {
				rewindErr = err
				return nil //nolint:nilerr // ends the retries; rewindErr is reported below
			}
		}
		return call(ctx, attempt)
	})
	if rewindErr != nil {
		return &PathError{Op: op, Path: path, Err: fmt.Errorf("%w: rewinding the body for a retry: %w", ErrUnavailable, rewindErr)}
	}
	return err
}

func (r *retryDriver) Delete(ctx context.Context, path string) error {
	return r.do(ctx, "delete", path, func(ctx context.Context, attempt int) error {
		err := r.Driver.Delete(ctx, path)
		if attempt > 1 && errors.Is(err, ErrNotFound) {
			return nil // an earlier attempt that failed may have deleted it
		}
		return err
	})
}

func (r *retryDriver) List(ctx context.Context, dir, after string, limit int) ([]Info, error) {
	var l []Info
	err := r.do(ctx, "list", dir, func(ctx context.Context, _ int) error {
		var err error
		l, err = r.Driver.List(ctx, dir, after, limit)
		return err
	})
	return l, err
}

func (r *retryDriver) Copy(ctx context.Context, src, dst string) error {
	return r.do(ctx, "copy", dst, func(ctx context.Context, _ int) error { return r.Driver.Copy(ctx, src, dst) })
}

func (r *retryDriver) URL(ctx context.Context, path string, expiry time.Duration) (string, error) {
	var u string
	err := r.do(ctx, "url", path, func(ctx context.Context, _ int) error {
		var err error
		u, err = r.Driver.URL(ctx, path, expiry)
		return err
	})
	return u, err
}

// PurgeSessions implements SessionPurger by passing the call through to the wrapped
// driver (retried like List: it only discards).
func (r *retryDriver) PurgeSessions(ctx context.Context, p string) error {
	return r.do(ctx, "purge sessions", p, func(ctx context.Context, _ int) error { return PurgeSessions(ctx, r.Driver, p) })
}

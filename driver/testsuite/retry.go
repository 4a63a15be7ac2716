package testsuite

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registryd/registryd/driver"
)

// Outage describes how a cloud driver meets a backend that fails every request.
type Outage struct {
	// Fail writes the backend's "unavailable" answer (a 503 in the backend's own error
	// format) to one request.
	Fail http.HandlerFunc
	// Open returns the driver under test, talking to endpoint, with its own retries (the
	// calls driver.WithRetry does not retry) following policy.
	Open func(t *testing.T, endpoint string, policy driver.RetryPolicy) driver.Driver
}

// RunRetryAttempts points the driver at a server failing every request and counts the
// requests of one call during that outage: exactly the policy's MaxAttempts, whether
// driver.WithRetry retries the call (the SDK then tries once) or the driver retries itself
// (a Writer's requests, a call on an unwrapped driver). One retry layer, never attempts
// multiplied by a second.
func RunRetryAttempts(t *testing.T, o Outage) {
	policy := driver.RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}
	stat := func(ctx context.Context, d driver.Driver) error {
		_, err := d.Stat(ctx, "a/b")
		return err
	}
	for _, c := range []struct {
		name    string
		wrapped bool
		call    func(ctx context.Context, d driver.Driver) error
	}{
		{"stat through WithRetry", true, stat},
		{"stat unwrapped", false, stat},
		{"list through WithRetry", true, func(ctx context.Context, d driver.Driver) error {
			_, err := d.List(ctx, "a", "", 0)
			return err
		}},
		{"writer commit through WithRetry", true, func(ctx context.Context, d driver.Driver) error {
			w, err := d.Writer(ctx, "a/b", nil)
			if err != nil {
				return err
			}
			if _, err := w.Write([]byte("data")); err != nil {
				return err
			}
			return w.Commit(ctx)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				o.Fail(w, r)
			}))
			defer srv.Close()
			d := o.Open(t, srv.URL, policy)
			if c.wrapped {
				d = driver.WithRetry(d, policy)
			}
			err := c.call(context.Background(), d)
			if !driver.Retryable(err) {
				t.Fatalf("error %v, want a transient failure (ErrUnavailable or ErrThrottled)", err)
			}
			if n := requests.Load(); n != int64(policy.MaxAttempts) {
				t.Errorf("%d requests, want %d", n, policy.MaxAttempts)
			}
		})
	}
}

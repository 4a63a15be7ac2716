package azure

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registryd/registryd/driver"
)

// TestRetryAttempts points the driver at a server answering 503 to every request and
// counts the requests of one call during that outage: exactly the policy's MaxAttempts,
// whether driver.WithRetry retries the call (the SDK then tries once) or the driver
// retries itself (a Writer's requests, a call on an unwrapped driver).
func TestRetryAttempts(t *testing.T) {
	policy := driver.RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}
	for _, c := range []struct {
		name    string
		wrapped bool
		call    func(ctx context.Context, d driver.Driver) error
	}{
		{"stat through WithRetry", true, func(ctx context.Context, d driver.Driver) error {
			_, err := d.Stat(ctx, "a/b")
			return err
		}},
		{"stat unwrapped", false, func(ctx context.Context, d driver.Driver) error {
			_, err := d.Stat(ctx, "a/b")
			return err
		}},
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
				w.Header().Set("Content-Type", "application/xml")
				w.Header().Set("x-ms-error-code", "ServerBusy")
				w.WriteHeader(http.StatusServiceUnavailable)
				if r.Method != http.MethodHead {
					_, _ = w.Write([]byte("<Error><Code>ServerBusy</Code><Message>backend down</Message></Error>"))
				}
			}))
			defer srv.Close()
			ad, err := newTestDriver(testConfig{AccountName: "acct", AccountKey: "a2V5", Container: "c", ServiceURL: srv.URL + "/"}, policy)
			if err != nil {
				t.Fatal(err)
			}
			var d driver.Driver = ad
			if c.wrapped {
				d = driver.WithRetry(d, policy)
			}
			err = c.call(context.Background(), d)
			if !driver.Retryable(err) {
				t.Fatalf("error %v, want a transient failure (ErrUnavailable or ErrThrottled)", err)
			}
			if n := requests.Load(); n != int64(policy.MaxAttempts) {
				t.Errorf("%d requests, want %d", n, policy.MaxAttempts)
			}
		})
	}
}

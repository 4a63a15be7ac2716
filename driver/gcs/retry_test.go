package gcs

import (
	"net/http"
	"testing"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/testsuite"
)

// TestRetryAttempts: during an outage one call makes exactly storage.retry's attempts.
func TestRetryAttempts(t *testing.T) {
	testsuite.RunRetryAttempts(t, testsuite.Outage{
		Fail: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":503,"message":"backend down"}}`))
		},
		Open: func(t *testing.T, endpoint string, policy driver.RetryPolicy) driver.Driver {
			d, err := New(newTestClient(t, endpoint), "b", Options{Retry: policy})
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
	})
}

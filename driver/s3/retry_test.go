package s3_test

import (
	"net/http"
	"testing"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/testsuite"
)

// TestRetryAttempts: during an outage one call makes exactly storage.retry's attempts.
func TestRetryAttempts(t *testing.T) {
	isolate(t)
	testsuite.RunRetryAttempts(t, testsuite.Outage{
		Fail: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("<Error><Code>ServiceUnavailable</Code><Message>backend down</Message></Error>"))
		},
		Open: func(t *testing.T, endpoint string, policy driver.RetryPolicy) driver.Driver {
			return newDriver(t, testConfig{Bucket: "b", RegionEndpoint: endpoint, AccessKey: "a", SecretKey: "s"}, policy)
		},
	})
}

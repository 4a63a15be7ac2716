package azure

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
			w.Header().Set("Content-Type", "application/xml")
			w.Header().Set("x-ms-error-code", "ServerBusy")
			w.WriteHeader(http.StatusServiceUnavailable)
			if r.Method != http.MethodHead {
				_, _ = w.Write([]byte("<Error><Code>ServerBusy</Code><Message>backend down</Message></Error>"))
			}
		},
		Open: func(t *testing.T, endpoint string, policy driver.RetryPolicy) driver.Driver {
			d, err := newTestDriver(testConfig{AccountName: "acct", AccountKey: "a2V5", Container: "c", ServiceURL: endpoint + "/"}, policy)
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
	})
}

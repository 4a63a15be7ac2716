package e2e

import (
	"testing"

	"github.com/registryd/registryd/internal/testenv"
)

// moreMisconfigs adds the S3 and GCS cases (wrong credentials, missing bucket,
// unreachable endpoint).
func moreMisconfigs(t *testing.T, closed string) map[string][]misconfig {
	m := testenv.StartMinIO(t)
	bucket := m.NewBucket(t)
	f := testenv.StartFakeGCS(t)
	return map[string][]misconfig{
		// fake-gcs-server checks no credentials: wrong credentials are covered by the
		// driver's classify table test.
		"gcs": {
			{"missing bucket", gcsStorage("no-such-bucket", f.Endpoint), "backend misconfigured"},
			{"unreachable", gcsStorage("b", closed+"/storage/v1/"), "backend unavailable"},
		},
		"s3": {
			{"wrong key", s3Storage(m, bucket, m.AccessKey, "wrong-secret-key", m.Endpoint), "backend denied access"},
			{"missing bucket", s3Storage(m, "no-such-bucket", m.AccessKey, m.SecretKey, m.Endpoint), "backend misconfigured"},
			{"unreachable", s3Storage(m, bucket, m.AccessKey, m.SecretKey, closed), "backend unavailable"},
		},
	}
}

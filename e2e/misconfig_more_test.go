package e2e

import (
	"testing"

	"github.com/registryd/registryd/internal/testenv"
)

// moreMisconfigs adds the S3 cases (wrong secret, missing bucket, unreachable endpoint).
func moreMisconfigs(t *testing.T, closed string) map[string][]misconfig {
	m := testenv.StartMinIO(t)
	bucket := m.NewBucket(t)
	return map[string][]misconfig{
		"s3": {
			{"wrong key", s3Storage(m, bucket, m.AccessKey, "wrong-secret-key", m.Endpoint), "backend denied access"},
			{"missing bucket", s3Storage(m, "no-such-bucket", m.AccessKey, m.SecretKey, m.Endpoint), "backend misconfigured"},
			{"unreachable", s3Storage(m, bucket, m.AccessKey, m.SecretKey, closed), "backend unavailable"},
		},
	}
}

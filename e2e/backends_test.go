package e2e

import (
	"fmt"
	"testing"

	"github.com/registryd/registryd/internal/testenv"
)

// backends lists every storage backend the end-to-end tests run on. The cloud backends
// start their emulator (a fresh one per call) and a fresh bucket or container.
func backends() []backend {
	return []backend{
		{"filesystem", filesystemBackend, false},
		{"inmemory", inmemoryBackend, false},
		{"s3", s3Backend, true},
		{"gcs", gcsBackend, false},
		{"azure", azureBackend, true},
	}
}

func azureBackend(t *testing.T) string {
	a := testenv.StartAzurite(t)
	return fmt.Sprintf("  azure:\n    accountname: %s\n    accountkey: %q\n    container: %s\n    serviceurl: %s\n",
		a.Account, a.Key, a.NewContainer(t), a.ServiceURL)
}

func s3Backend(t *testing.T) string {
	m := testenv.StartMinIO(t)
	return s3Storage(m, m.NewBucket(t), m.AccessKey, m.SecretKey, m.Endpoint)
}

func s3Storage(m *testenv.MinIO, bucket, access, secret, endpoint string) string {
	return fmt.Sprintf("  s3:\n    bucket: %s\n    region: %s\n    regionendpoint: %s\n    forcepathstyle: true\n"+
		"    accesskey: %s\n    secretkey: %q\n    chunksize: 5242880\n", bucket, m.Region, endpoint, access, secret)
}

// gcsBackend runs on fake-gcs-server without credentials, so it cannot sign URLs.
func gcsBackend(t *testing.T) string {
	f := testenv.StartFakeGCS(t)
	return gcsStorage(f.NewBucket(t), f.Endpoint)
}

func gcsStorage(bucket, endpoint string) string {
	return fmt.Sprintf("  gcs:\n    bucket: %s\n    endpoint: %s\n    chunksize: 5242880\n", bucket, endpoint)
}

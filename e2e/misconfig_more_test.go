package e2e

import "testing"

// moreMisconfigs adds the S3 and GCS cases (filled in as those drivers land).
func moreMisconfigs(t *testing.T, closed string) map[string][]misconfig { return nil }

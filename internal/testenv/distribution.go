package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Distribution is a running CNCF Distribution registry (the reference implementation of
// the storage layout registryd uses), installed by scripts/install-tools.sh as
// $REGISTRYD_TOOLS/bin/registry.
type Distribution struct {
	*Process
	// URL is "http://127.0.0.1:<port>".
	URL string
	// Host is "127.0.0.1:<port>".
	Host string
	// RootDir is its filesystem storage root directory.
	RootDir string
	// ConfigPath is the config file it was started with.
	ConfigPath string
}

// distributionConfig serves rootDir on addr with deletes on and every background job that
// would write to the directory on its own (upload purging) or probe it (health) off.
const distributionConfig = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: e2e-distribution-secret-0123456789
`

// StartDistribution starts `registry serve` with filesystem storage in rootDir on a free
// loopback port; it is ready when GET /v2/ answers. It is stopped at cleanup (or earlier
// with Stop, to hand the directory to another server).
func StartDistribution(t testing.TB, rootDir string) *Distribution {
	t.Helper()
	bin := Tool(t, "registry")
	addr := Addr(FreePort(t))
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(distributionConfig, rootDir, addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := Start(t, Spec{
		Name: "distribution",
		Path: bin,
		Args: []string{"serve", cfgPath},
		// Tracing is on by default in v3 and would export to an OTLP endpoint.
		Env:   []string{"OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none"},
		Dir:   dir,
		Addr:  addr,
		Ready: HTTPReady("http://" + addr + "/v2/"),
	})
	return &Distribution{Process: p, URL: "http://" + addr, Host: addr, RootDir: rootDir, ConfigPath: cfgPath}
}

package e2e

import (
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/registryd/registryd/internal/testenv"
)

// conformanceConfig turns on every workflow and optional switch of the suite; sparse
// toggles the one data set that a strict registry must reject (see README).
func conformanceConfig(host, results string, sparse bool) string {
	return fmt.Sprintf(`registry: %s
tls: disabled
repo1: conformance/repo1
repo2: conformance/other/repo2
resultsDir: %s
logging: warn
apis:
  ping: true
  pull: true
  push: true
  referrer: true
  blobs: {atomic: true, delete: true, digestHeader: true, mountAnonymous: true, uploadCancel: true}
  manifests: {atomic: true, delete: true, digestHeader: true, tagParam: true}
  tags: {atomic: true, delete: true, list: true}
data:
  image: true
  index: true
  indexList: true
  sparse: %v
  artifact: true
  subject: true
  subjectMissing: true
  artifactList: true
  subjectList: true
  dataField: true
  nondistributable: true
  customFields: true
  noLayers: true
  emptyBlob: true
  sha512: true
`, host, results, sparse)
}

type junitSuites struct {
	Tests  int          `xml:"tests,attr"`
	Suites []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name    string    `xml:"name,attr"`
	Skipped *struct{} `xml:"skipped"`
	Failure *struct{} `xml:"failure"`
	Error   *struct{} `xml:"error"`
}

// runConformance runs the OCI conformance suite against host and fails unless it reports
// at least one test, no failure, no error and no skip. It returns the number of tests.
func runConformance(t *testing.T, host string, sparse bool) int {
	t.Helper()
	bin := testenv.Tool(t, "oci-conformance")
	dir := t.TempDir()
	results := filepath.Join(dir, "results")
	cfg := filepath.Join(dir, "oci.yaml")
	if err := os.WriteFile(cfg, []byte(conformanceConfig(host, results, sparse)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OCI_CONFIGURATION="+cfg)
	out, runErr := cmd.CombinedOutput()
	b, err := os.ReadFile(filepath.Join(results, "junit.xml"))
	if err != nil {
		t.Fatalf("conformance produced no junit.xml (%v): %v\n%s", runErr, err, tail(out))
	}
	var js junitSuites
	if err := xml.Unmarshal(b, &js); err != nil {
		t.Fatalf("parse junit.xml: %v", err)
	}
	tests, failures, skipped := 0, 0, 0
	var bad []string
	for _, s := range js.Suites {
		tests += s.Tests
		failures += s.Failures + s.Errors
		skipped += s.Skipped
		for _, c := range s.Cases {
			if c.Skipped != nil || c.Failure != nil || c.Error != nil {
				bad = append(bad, c.Name)
			}
		}
	}
	t.Logf("OCI conformance (sparse=%v): %d tests, %d failures, %d skipped", sparse, tests, failures, skipped)
	if runErr != nil || tests == 0 || failures != 0 || skipped != 0 || len(bad) != 0 {
		t.Fatalf("conformance: exit %v, %d tests, %d failures, %d skipped; failing or skipped: %s\n%s",
			runErr, tests, failures, skipped, strings.Join(bad, ", "), tail(out))
	}
	return tests
}

func tail(b []byte) string {
	const n = 6000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// backend is a storage configuration registryd can be started with.
type backend struct {
	name string
	// storage returns the YAML "storage:" body (indented by two spaces) for a fresh,
	// empty store; it may start an emulator.
	storage func(t *testing.T) string
	// signs reports a driver that can pre-sign URLs (blob redirects).
	signs bool
}

func filesystemBackend(t *testing.T) string {
	return "  filesystem:\n    rootdirectory: " + t.TempDir() + "\n"
}

func inmemoryBackend(t *testing.T) string { return "  inmemory: {}\n" }

// registryConfig is a full config.yml for a backend's storage section.
func registryConfig(storage string, extra string) string {
	return "version: 0.1\nlog:\n  level: warn\nhttp:\n  secret: e2e-secret-0123456789abcdef\nstorage:\n" + storage +
		"  delete:\n    enabled: true\n" + extra
}

func TestConformance(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, sparse := range []bool{false, true} {
				t.Run(fmt.Sprintf("sparse=%v", sparse), func(t *testing.T) {
					extra := ""
					if sparse {
						extra = "validation:\n  manifests:\n    allowsparse: true\n"
					}
					r := testenv.StartRegistryd(t, registryConfig(b.storage(t), extra))
					runConformance(t, r.Host, sparse)
				})
			}
		})
	}
}

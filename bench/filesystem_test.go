package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/registryd/registryd/internal/testenv"
)

// TestBenchFilesystem compares registryd and CNCF Distribution on the default backend, a
// local filesystem (each its own directory on the same disk), pushing both ways and
// pulling. Run: REGISTRYD_BENCH=1 go test ./bench -run TestBenchFilesystem -v -timeout 60m
func TestBenchFilesystem(t *testing.T) {
	if os.Getenv("REGISTRYD_BENCH") == "" {
		t.Skip("benchmark: set REGISTRYD_BENCH=1 (see bench/README.md)")
	}
	newRows := func(t *testing.T) []row {
		dir := t.TempDir()
		storage := func(name string) string {
			return fmt.Sprintf("  filesystem:\n    rootdirectory: %s\n", filepath.Join(dir, name))
		}
		dist := startDistribution(t, storage("distribution"))
		distMono := *dist.(*registry)
		distMono.label, distMono.mono = distMono.label+", POST+PUT with body", true
		reg := testenv.StartRegistryd(t, "version: 0.1\nlog: {level: warn}\nhttp: {secret: bench-secret-0123456789}\nstorage:\n"+storage("registryd"))
		return []row{
			{tg: dist, push: true, pull: true, ref: 0},
			{tg: &distMono, key: "m", push: true, ref: 1},
			{tg: &registry{label: "registryd, POST+PATCH+PUT", url: reg.URL, proc: reg.Process}, push: true, pull: true, ref: 0},
			{tg: &registry{label: "registryd, POST+PUT with body", url: reg.URL, proc: reg.Process, mono: true}, key: "m", push: true, ref: 1},
		}
	}
	scenarios := []scenario{{"1 client × 1 GiB", 1, 1 << 30}, {"16 clients × 32 MiB", 16, 32 << 20}, {"64 clients × 1 MiB", 64, 1 << 20}}
	rounds := benchRounds()
	table := benchTable(t, scenarios, rounds, "Distribution", newRows)
	writeResults(t, "filesystem.md", "Filesystem: registryd against CNCF Distribution v3.1.2",
		"REGISTRYD_BENCH=1 go test ./bench -run TestBenchFilesystem -v -timeout 60m", rounds,
		"each registry on its own directory of the same disk, ratios against Distribution pushing the same way (chunked or monolithic).",
		table)
}

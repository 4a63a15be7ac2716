// Package depcheck enforces the one direction of dependency: handlers → storage → driver,
// and keeps config out of the drivers (cmd/registryd turns config into driver options).
package depcheck

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/registryd/registryd/"

// forbidden maps a package prefix to import prefixes it must never reach (directly or not).
var forbidden = map[string][]string{
	mod + "handlers": {mod + "driver/", "github.com/aws/", "cloud.google.com/go/storage", "github.com/Azure/"},
	mod + "storage":  {"github.com/labstack/echo", mod + "handlers", mod + "driver/"},
	// Drivers own their options; only cmd/registryd turns config into clients and options.
	mod + "driver": {mod + "storage", mod + "handlers", "github.com/labstack/echo", mod + "config"},
	mod + "errors": {mod + "storage", mod + "handlers", mod + "driver"},
	mod + "config": {mod + "storage", mod + "handlers", mod + "driver"},
	// Release tooling (image builder, schema conversion) stays out of the binary.
	mod + "cmd/registryd": {mod + "internal/release", mod + "internal/k8sschemas", "github.com/google/go-containerregistry"},
	mod + "auth":          {mod + "storage", mod + "handlers", mod + "driver", mod + "config", "github.com/labstack/echo"},
}

func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-json", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		for pkg, bad := range forbidden {
			if p.ImportPath != pkg && !strings.HasPrefix(p.ImportPath, pkg+"/") {
				continue
			}
			checked++
			for _, d := range p.Deps {
				for _, b := range bad {
					if strings.HasPrefix(d, b) && !strings.HasPrefix(p.ImportPath, strings.TrimSuffix(b, "/")) {
						t.Errorf("%s depends on %s", p.ImportPath, d)
					}
				}
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d packages", checked)
	}
}

package helmchart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/registryd/registryd/internal/testenv"
)

// chartDir is the chart under test, from this file's directory.
func chartDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "helm", "registryd")
}

// examples returns the chart's example values files by base name.
func examples(t testing.TB) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir(t), "examples", "*.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("examples: %v (%d files, want 5 or more)", err, len(files))
	}
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), ".yaml")] = f
	}
	return out
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// needTools skips under -short and returns the path of each tool, failing when one is missing.
func needTools(t testing.TB, names ...string) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("chart tests need helm and Kubernetes tools; skipped with -short")
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = testenv.Tool(t, n)
	}
	return out
}

// cmdResult is what a command printed.
type cmdResult struct {
	stdout, stderr string
	err            error
}

// run runs a command (bounded by timeout) in an environment with extra variables added.
func run(ctx context.Context, timeout time.Duration, env []string, stdin io.Reader, name string, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return cmdResult{stdout: out.String(), stderr: errb.String(), err: err}
}

// helmEnv keeps helm's caches and registry config inside the test.
func helmEnv(t testing.TB) []string {
	t.Helper()
	d := t.TempDir()
	return []string{
		"HELM_CACHE_HOME=" + filepath.Join(d, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(d, "config"),
		"HELM_DATA_HOME=" + filepath.Join(d, "data"),
		"HELM_REGISTRY_CONFIG=" + filepath.Join(d, "registry.json"),
	}
}

// object is one rendered or stored Kubernetes object.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }

func (o object) name() string { return str(o, "metadata", "name") }

// get walks nested maps (string keys) and lists (int keys).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if o, ok2 := v.(object); ok2 {
					m = o
				} else {
					return nil
				}
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

// parseObjects splits a multi-document YAML stream into objects (empty documents dropped).
func parseObjects(t testing.TB, manifests string) []object {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(manifests))
	var out []object
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("parse manifests: %v\n%s", err, manifests)
		}
		if len(m) > 0 {
			out = append(out, object(m))
		}
	}
}

// find returns the only object of kind whose name ends with suffix, failing otherwise.
func find(t testing.TB, objs []object, kind, suffix string) object {
	t.Helper()
	var found []object
	for _, o := range objs {
		if o.kind() == kind && strings.HasSuffix(o.name(), suffix) {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s named *%s, found %d", kind, suffix, len(found))
	}
	return found[0]
}

// has reports whether an object of kind exists.
func has(objs []object, kind string) bool {
	for _, o := range objs {
		if o.kind() == kind {
			return true
		}
	}
	return false
}

package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// repoRoot returns the module root (the directory holding go.mod).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// RegistrydBinary builds cmd/registryd once per test process and returns its path
// (skipped under -short).
func RegistrydBinary(t testing.TB) string {
	t.Helper()
	SkipIfShort(t, "a registryd process")
	buildOnce.Do(func() {
		// One fixed path per checkout, replaced atomically: concurrent test binaries may
		// build at once, and running processes keep their inode. Keyed by the checkout so
		// that two work trees on one machine never run each other's build.
		sum := sha256.Sum256([]byte(repoRoot()))
		dir := filepath.Join(os.TempDir(), "registryd-test-bin-"+hex.EncodeToString(sum[:6]))
		if buildErr = os.MkdirAll(dir, 0o755); buildErr != nil {
			return
		}
		buildPath = filepath.Join(dir, "registryd")
		tmp := fmt.Sprintf("%s.%d", buildPath, os.Getpid())
		cmd := exec.Command("go", "build", "-o", tmp, "./cmd/registryd")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		buildErr = os.Rename(tmp, buildPath)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// Registryd is a running registryd process.
type Registryd struct {
	*Process
	// URL is "http://127.0.0.1:<port>".
	URL string
	// Host is "127.0.0.1:<port>".
	Host string
	// ConfigPath is the config file it was started with.
	ConfigPath string
}

// StartRegistryd writes config (YAML; an "http.addr" key is added when absent — use
// "{{ADDR}}" to place it yourself) to a temp file and starts registryd on a free port with
// it, plus extra environment (REGISTRY_* overrides). It is ready when GET /v2/ answers.
func StartRegistryd(t testing.TB, config string, env ...string) *Registryd {
	t.Helper()
	return StartRegistrydOnPort(t, FreePort(t), config, env...)
}

// StartRegistrydOnPort is StartRegistryd on a given port (to restart on the same address).
func StartRegistrydOnPort(t testing.TB, port int, config string, env ...string) *Registryd {
	t.Helper()
	bin := RegistrydBinary(t)
	addr := Addr(port)
	env = append(env, "REGISTRY_HTTP_ADDR="+addr)
	config = strings.ReplaceAll(config, "{{ADDR}}", addr)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p := Start(t, Spec{
		Name:  "registryd",
		Path:  bin,
		Args:  []string{"serve", cfgPath},
		Env:   env,
		Dir:   dir,
		Addr:  addr,
		Ready: HTTPReady("http://" + addr + "/v2/"),
	})
	return &Registryd{Process: p, URL: "http://" + addr, Host: addr, ConfigPath: cfgPath}
}

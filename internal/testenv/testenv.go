// Package testenv starts the real components tests run against (emulators, registryd
// itself, reference registries) as child processes on free loopback ports, or in a
// network namespace the test makes (NewNetNS) when loopback will not do, and stops them
// when the test ends. Tools are found in $REGISTRYD_TOOLS/bin (installed by
// scripts/install-tools.sh); a missing tool fails the test, it never skips it.
//
// Who may import it: tests only.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ToolsDir returns the directory install-tools.sh installs into.
func ToolsDir() string {
	if d := os.Getenv("REGISTRYD_TOOLS"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "registryd-tools")
}

// Tool returns the path of an installed tool, failing the test if it is absent.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(ToolsDir(), "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("tool %s not installed: run scripts/install-tools.sh", name)
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is a started child process. Its combined output is kept and printed if the test
// fails.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Addr string // host:port it listens on

	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

// Write collects the process output.
func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output returns what the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Spec describes a process to start.
type Spec struct {
	Name string
	Path string
	Args []string
	Env  []string // added to a minimal environment (PATH, HOME, TMPDIR)
	Dir  string
	Addr string // host:port
	// Ready returns nil once the process serves; polled until ReadyTimeout (default 60s).
	Ready        func(ctx context.Context) error
	ReadyTimeout time.Duration
}

// Start starts s, waits until Ready, and registers a cleanup that stops it.
func Start(t testing.TB, s Spec) *Process {
	t.Helper()
	p := &Process{Name: s.Name, Addr: s.Addr, done: make(chan struct{})}
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Dir = s.Dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}, s.Env...)
	cmd.Stdout, cmd.Stderr = p, p
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", s.Name, err)
	}
	p.Cmd = cmd
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", s.Name, tail(p.Output(), 8000))
		}
	})
	timeout := s.ReadyTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := s.Ready(ctx)
		cancel()
		if err == nil {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before ready: %v\n%s", s.Name, cmd.ProcessState, tail(p.Output(), 8000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v: %v\n%s", s.Name, timeout, err, tail(p.Output(), 8000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop sends SIGTERM to the process group, then SIGKILL after 10s. Safe to call twice.
func (p *Process) Stop() {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// Kill sends SIGKILL to the process group and waits for the exit.
func (p *Process) Kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

func (p *Process) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.Cmd.Process.Pid, sig)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// HTTPReady returns a Ready function that succeeds once GET url answers with a status
// below 500.
func HTTPReady(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
		}
		return nil
	}
}

// createNamed creates a resource (bucket, container) with a fresh random name through
// create, retrying for a few seconds: emulators may refuse creation right after they start.
func createNamed(t testing.TB, what string, create func(ctx context.Context, name string) error) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "test-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last error
	for attempt := 0; attempt < 50 && ctx.Err() == nil; attempt++ {
		if last = create(ctx, name); last == nil {
			return name
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("create %s %s: %v", what, name, last)
	return ""
}

// Addr returns "127.0.0.1:<port>".
func Addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dockerd is a private Docker engine (the Debian docker.io dockerd) started without
// systemd: vfs storage, no bridge, no iptables, its own data-root, exec-root and socket
// under one temp directory, and its own managed containerd. It is meant for push/pull
// tests against registries on 127.0.0.1, which the engine treats as plain-http
// registries by default, or in a test's NetNS (TLS verified, CA from TrustRegistry); it
// is never given an image name that would reach docker.io.
type Dockerd struct {
	*Process
	// Host is the DOCKER_HOST value: "unix://<root>/s".
	Host string
	// Root holds data-root (d), exec-root (e), the pidfile, the socket and the CLI config.
	Root string
	// CLI is the docker client binary used by Run and Exec.
	CLI string

	configDir string
}

// StartDockerd starts a private dockerd and waits until `docker version` reaches it. It
// fails the test when not running as root or when dockerd/docker are not installed. The
// engine is stopped, its mounts are detached and its directory is removed at cleanup.
func StartDockerd(t testing.TB) *Dockerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("dockerd needs root (euid %d): run the Docker tests as root", os.Geteuid())
	}
	dockerd := Tool(t, "dockerd")
	cli := dockerCLI(t, dockerd)

	// Unix socket paths must stay under 108 bytes, and the managed containerd puts its
	// sockets below exec-root: keep every path short (t.TempDir() names can be long).
	root, err := os.MkdirTemp("/tmp", "dk")
	if err != nil {
		t.Fatal(err)
	}
	d := &Dockerd{Root: root, CLI: cli, Host: "unix://" + filepath.Join(root, "s"), configDir: filepath.Join(root, "cfg")}
	// Registered first, so it runs last: after the process cleanup Start registers.
	t.Cleanup(func() { d.cleanupRoot(t) })
	for _, sub := range []string{"d", "e", "cfg"} {
		if err := os.Mkdir(filepath.Join(root, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// An empty client config: no credential helpers, no proxies, no contexts from $HOME.
	if err := os.WriteFile(filepath.Join(d.configDir, "config.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	d.Process = Start(t, Spec{
		Name: "dockerd",
		Path: dockerd,
		Args: []string{
			"--storage-driver=vfs",
			"--iptables=false", "--ip6tables=false", "--ip-masq=false",
			"--bridge=none",
			"--data-root", filepath.Join(root, "d"),
			"--exec-root", filepath.Join(root, "e"),
			"--pidfile", filepath.Join(root, "p"),
			"--host", d.Host,
			"--log-level=warn",
		},
		Dir: root,
		Ready: func(ctx context.Context) error {
			_, err := d.Exec(ctx, "version", "--format", "{{.Server.Version}}")
			return err
		},
		ReadyTimeout: 60 * time.Second,
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := d.Exec(ctx, "info", "--format", "{{.Driver}}")
	if err != nil {
		t.Fatalf("docker info: %v", err)
	}
	if strings.TrimSpace(out) != "vfs" {
		t.Fatalf("dockerd storage driver %q, want vfs", strings.TrimSpace(out))
	}
	return d
}

// dockerCLI picks the docker client shipped with the engine (Debian: /usr/sbin/dockerd and
// /usr/bin/docker), so client and daemon come from one package; another docker earlier in
// PATH is used only when that one is missing.
func dockerCLI(t testing.TB, dockerd string) string {
	t.Helper()
	if real, err := filepath.EvalSymlinks(dockerd); err == nil {
		sibling := filepath.Join(filepath.Dir(filepath.Dir(real)), "bin", "docker")
		if st, err := os.Stat(sibling); err == nil && st.Mode().IsRegular() {
			return sibling
		}
	}
	return Tool(t, "docker")
}

// Command returns an unstarted docker CLI command talking to this engine with a private
// client config directory.
func (d *Dockerd) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.CLI, args...)
	cmd.Dir = d.Root
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + d.configDir,
		"TMPDIR=" + os.TempDir(),
		"DOCKER_HOST=" + d.Host,
		"DOCKER_CONFIG=" + d.configDir,
		"DOCKER_CLI_HINTS=false",
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Exec runs the docker CLI and returns its stdout; on failure the error carries stderr.
// It is safe to call from several goroutines.
func (d *Dockerd) Exec(ctx context.Context, args ...string) (string, error) {
	cmd := d.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return stdout.String(), fmt.Errorf("docker %s: %w\nstdout: %s\nstderr: %s",
			strings.Join(args, " "), err, tail(stdout.String(), 2000), tail(stderr.String(), 4000))
	}
	return stdout.String(), nil
}

// Run runs the docker CLI (bounded by two minutes) and returns its stdout, failing the
// test on error. Call it from the test goroutine only; use Exec elsewhere.
func (d *Dockerd) Run(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := d.Exec(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cleanupRoot runs after the dockerd process is stopped: it kills the managed containerd
// if it outlived dockerd, detaches any mount left below the root (dockerd bind-mounts its
// data-root onto itself) and removes the directory.
func (d *Dockerd) cleanupRoot(t testing.TB) {
	pidFile := filepath.Join(d.Root, "e", "containerd", "containerd.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			// Only if that pid is still our containerd (its config lives below our root).
			if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil &&
				bytes.Contains(cmdline, []byte(d.Root+"/")) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				for i := 0; i < 50; i++ {
					if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
	}
	for _, m := range mountsBelow(d.Root) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(d.Root); err != nil {
		t.Logf("remove %s: %v", d.Root, err)
	}
}

// mountsBelow lists the mount points at or below dir, deepest first.
func mountsBelow(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMountPath undoes the octal escapes (\040 for a space, ...) of mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

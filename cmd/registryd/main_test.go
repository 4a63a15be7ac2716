package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/registryd/registryd/config"
)

// runCLI runs the command line in-process and returns its exit status and output.
func runCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // serve, should a case reach it, returns at once
	code := run(ctx, args, env, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHelpAndUsage(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string
		stderr     string
		noStderr   bool
		notContain string
	}{
		{args: []string{"--help"}, code: 0, stdout: "registryd config check", noStderr: true},
		{args: []string{"-h"}, code: 0, stdout: "Exit status", noStderr: true},
		{args: []string{"help"}, code: 0, stdout: "registryd version", noStderr: true},
		{args: []string{"serve", "--help"}, code: 0, stdout: "-config FILE", noStderr: true},
		{args: []string{"serve", "-h"}, code: 0, stdout: "http.draindelay", noStderr: true},
		{args: []string{"config", "check", "--help"}, code: 0, stdout: "secrets masked", noStderr: true},
		{args: []string{"config", "--help"}, code: 0, stdout: "config check", noStderr: true},
		{args: []string{"config"}, code: 2, stderr: "want the subcommand check"},
		{args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{args: []string{"serve", "--bogus"}, code: 2, stderr: "-bogus"},
		{args: []string{"serve", "a.yml", "b.yml"}, code: 2, stderr: "one configuration file at most"},
		{args: []string{"serve", "-c", "a.yml", "b.yml"}, code: 2, stderr: "once"},
		{args: []string{"serve", "a.yml", "-c"}, code: 2, stderr: "one configuration file at most"},
		{args: []string{"serve", "--", "-c"}, code: 2, stderr: "flags go before the file"},
		{args: []string{"serve", "/no/such/file.yml"}, code: 2, stderr: "no such file"},
		{args: []string{"-c", "/no/such/file.yml"}, code: 2, stderr: "no such file"},
		{args: []string{"--version"}, code: 0, stdout: "revision:", noStderr: true},
		{args: []string{"config", "check", "-c", "/no/such/file.yml"}, code: 2, stderr: "no such file"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr)
			}
			if tc.noStderr && stderr != "" {
				t.Errorf("stderr: %s", stderr)
			}
		})
	}
}

// TestBadConfigurations: serve and config check refuse each bad configuration with exit
// status 2 and a message naming the key; serve writes it as JSON lines (stderr is no
// terminal here), one per problem.
func TestBadConfigurations(t *testing.T) {
	for _, tc := range []struct {
		name string
		yml  string
		env  []string
		keys []string
	}{
		{"s3 part with a unit below S3's minimum", "storage: {s3: {bucket: b, region: r, chunksize: 4MiB}}\n", nil, []string{"storage.s3.chunksize"}},
		{"not a size", "storage: {s3: {bucket: b, region: r, chunksize: 4 megs}}\n", nil, []string{"storage.s3.chunksize"}},
		{"field typo", "storage: {filesystem: {rootdir: /x}}\n", nil, []string{"storage.filesystem.rootdir"}},
		{"negative redirect expiry", "storage: {inmemory: {}, redirect: {expiry: -5m}}\n", nil, []string{"storage.redirect.expiry"}},
		{"redirect expiry beyond 7 days", "storage: {inmemory: {}, redirect: {expiry: 200h}}\n", nil, []string{"storage.redirect.expiry"}},
		{"port only", "http: {addr: \"5000\"}\n", nil, []string{"http.addr"}},
		{"env drain timeout", "", []string{"REGISTRY_HTTP_DRAINTIMEOUT=-5s"}, []string{"http.draintimeout"}},
		{"env retry delay", "", []string{"REGISTRY_STORAGE_RETRY_BASEDELAY=-1ms"}, []string{"storage.retry.basedelay"}},
		{"env unknown key in a known section", "", []string{"REGISTRY_STORAGE_S3_BUKET=b"}, []string{"storage.s3.buket"}},
		{"auth registryd lacks", "auth: {silly: {realm: r, service: s}}\n", nil, []string{"auth.silly"}},
		{"two keys on one line", "storage:\n  s3:\n    bucket: b\n    accesskey: AKIA  secretkey: x\n", nil, []string{"(file)"}},
		{"several at once", "http: {addr: \"5000\", draintimeout: -1s}\nlog: {level: loud}\n", nil, []string{"http.addr", "http.draintimeout", "log.level"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"serve"}
			check := []string{"config", "check"}
			if tc.yml != "" {
				p := writeFile(t, tc.yml)
				args = append(args, p)
				check = append(check, p)
			}
			code, _, stderr := runCLI(t, tc.env, args...)
			if code != exitUsage {
				t.Errorf("serve: exit %d, want %d\n%s", code, exitUsage, stderr)
			}
			var keys []string
			for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
				var rec struct {
					Level, Msg, Key, Error string
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("serve: stderr line is not JSON: %q", line)
				}
				if rec.Level != "ERROR" || rec.Msg != "invalid configuration" || rec.Error == "" {
					t.Errorf("serve: line %q", line)
				}
				keys = append(keys, rec.Key)
			}
			for _, k := range tc.keys {
				if !strings.Contains(strings.Join(keys, " "), k) {
					t.Errorf("serve: keys %q lack %s", keys, k)
				}
			}
			code, stdout, stderr := runCLI(t, tc.env, check...)
			if code != exitUsage || stdout != "" {
				t.Errorf("config check: exit %d, stdout %q", code, stdout)
			}
			for _, k := range tc.keys {
				if !strings.Contains(stderr, "config: "+k) {
					t.Errorf("config check: stderr lacks %q:\n%s", k, stderr)
				}
			}
		})
	}
}

// TestBootLoggerFormat: an invalid configuration is reported in the format it asks for.
func TestBootLoggerFormat(t *testing.T) {
	p := writeFile(t, "log: {formatter: text}\nhttp: {addr: \"5000\"}\n")
	code, _, stderr := runCLI(t, nil, "serve", "-c", p)
	if code != exitUsage || !strings.Contains(stderr, "level=ERROR") || !strings.Contains(stderr, "key=http.addr") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestConfigCheck prints the effective configuration with secrets masked, and the
// ignored settings on stderr.
func TestConfigCheck(t *testing.T) {
	p := writeFile(t, `
http: {secret: this-is-the-http-secret}
storage:
  s3: {bucket: b, region: r, accesskey: AKIAEXAMPLE, secretkey: topsecretkey}
  cache: {blobdescriptor: inmemory}
`)
	code, stdout, stderr := runCLI(t, []string{"REGISTRY_PORT=tcp://10.0.0.1:5000", "REGISTRY_LOG_LEVEL=warn"}, "config", "check", "--config", p)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, secret := range []string{"this-is-the-http-secret", "AKIAEXAMPLE", "topsecretkey"} {
		if strings.Contains(stdout, secret) {
			t.Errorf("stdout shows %q", secret)
		}
	}
	for _, want := range []string{"bucket: b", "accesskey: " + config.Masked, "draintimeout: 30s"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "warn: storage.cache") || !strings.Contains(stderr, "REGISTRY_PORT") {
		t.Errorf("stderr: %s", stderr)
	}
}

// TestExamplesLoad: every sample configuration under examples/ passes config check.
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yml")
	if err != nil || len(files) < 5 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			code, _, stderr := runCLI(t, nil, "config", "check", f)
			if code != 0 || stderr != "" {
				t.Errorf("exit %d: %s", code, stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "registryd ") || !strings.Contains(stdout, "revision: ") {
		t.Errorf("exit %d: %q", code, stdout)
	}
	stamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-11-30T01:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	for _, tc := range []struct {
		name     string
		bi       *debug.BuildInfo
		ok       bool
		override string
		short    string
		long     []string
	}{
		{"release", stamped, true, "", "v1.2.0+0123456789ab-modified",
			[]string{"registryd v1.2.0", "revision: 0123456789abcdef0123456789abcdef01234567 (with uncommitted changes)", "commit time: 2026-11-30T01:00:00Z", "go: go1.26.8"}},
		{"ldflags override", stamped, true, "2.0.0-rc1", "2.0.0-rc1+0123456789ab-modified", []string{"registryd 2.0.0-rc1"}},
		{"no vcs stamp", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true, "", "devel",
			[]string{"registryd devel", "revision: unknown (built without VCS information"}},
		{"pseudo-version holds the revision", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261130013417-0123456789ab"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}}}, true, "", "v0.0.0-20261130013417-0123456789ab", nil},
		{"no build info", nil, false, "", "devel", []string{"registryd devel"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := readBuildInfo(tc.bi, tc.ok, tc.override)
			if b.String() != tc.short {
				t.Errorf("String() = %q, want %q", b.String(), tc.short)
			}
			for _, w := range tc.long {
				if !strings.Contains(b.Long(), w) {
					t.Errorf("Long() lacks %q:\n%s", w, b.Long())
				}
			}
		})
	}
}

// TestLogLines: log lines are JSON with durations as strings with a unit, multi-line
// errors on one line, and log.fields on every line.
func TestLogLines(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(config.Log{Level: "debug", Formatter: "json", Fields: map[string]any{"service": "registry"}}, &buf)
	sdkErr := errors.New("PUT https://acct.blob.core.windows.net/c/x\n--------------------------------------------------------------------------------\nRESPONSE 403: 403 Forbidden\nERROR CODE: AuthenticationFailed\n")
	log.Info("request", "latency", 74822*time.Microsecond/1000, "age", 168*time.Hour, "error", sdkErr)
	log.Debug("backend call", "latency", 1234567*time.Microsecond)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["latency"] != "74.822µs" || rec["age"] != "168h0m0s" || rec["service"] != "registry" {
		t.Errorf("record: %v", rec)
	}
	if e, _ := rec["error"].(string); strings.Contains(e, "\n") || !strings.Contains(e, "RESPONSE 403: 403 Forbidden ERROR CODE: AuthenticationFailed") {
		t.Errorf("error: %q", e)
	}
	if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil {
		t.Fatal(err)
	}
	if d, err := time.ParseDuration(fmt.Sprint(rec["latency"])); err != nil || d != 1235*time.Millisecond {
		t.Errorf("latency %v: %v, %v", rec["latency"], d, err)
	}
	var info bytes.Buffer
	newLogger(config.Log{Level: "info", Formatter: "text"}, &info).Debug("hidden")
	if info.Len() != 0 {
		t.Errorf("debug line at info level: %s", info.String())
	}
}

func TestFormatDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{74822 * time.Nanosecond, "74.822µs"}, {74822123 * time.Nanosecond, "74.822ms"}, {1234567891 * time.Nanosecond, "1.235s"},
		{90*time.Second + 400*time.Millisecond, "1m30s"}, {0, "0s"}, {-1500 * time.Millisecond, "-1.5s"},
	} {
		if got := formatDuration(tc.d); got != tc.want {
			t.Errorf("formatDuration(%d) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

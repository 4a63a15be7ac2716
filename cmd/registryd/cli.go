package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/registryd/registryd/config"
)

// Exit statuses of registryd.
const (
	exitOK      = 0
	exitFailure = 1 // a runtime failure: listener, backend, a drain that timed out
	exitUsage   = 2 // a command-line mistake or an invalid configuration
)

const usage = `registryd: an OCI Distribution v1.1 registry over object storage.

Usage:
  registryd [serve] [-c FILE | FILE]      serve the registry (the default command)
  registryd config check [-c FILE | FILE] validate the configuration and print it, secrets masked
  registryd gc [--dry-run] [--plan FILE] [-c FILE | FILE]
                                          run one garbage collection now (see registryd gc --help)
  registryd version                       print the version and build information
  registryd fsck [-c FILE | FILE] [flags] check the stored registry; --repair what is safe
                                          (exit status 0 clean, 1 findings, 2 error)
  registryd selftest [-insecure] URL      push and pull a blob through a running registry
                                          (the Helm chart's test; REGISTRYD_SELFTEST_USERNAME and _PASSWORD;
                                          -cert FILE -key FILE under mutual TLS)
  registryd sleep DURATION                wait, then exit 0 (the chart's preStop pause)
  registryd migrate --from OLD.yml --to NEW.yml [--repos GLOB] [--concurrency N] [--dry-run]
                                          copy every repository from one backend to another
                                          (resumable, verified; see registryd migrate --help)
  registryd help                          print this help

Without a file, the configuration is the defaults (filesystem storage under ./data,
listening on :5000) with REGISTRY_* environment overrides (REGISTRY_STORAGE_S3_BUCKET
sets storage.s3.bucket). Every command takes -h/--help.

Exit status: 0 on success (serve: a clean drain after SIGTERM or SIGINT), 1 on a runtime
failure (listener, backend, or in-flight requests still running when http.draintimeout
ran out), 2 on a command-line mistake or an invalid configuration.
`

const serveUsage = `Usage: registryd serve [-c FILE | FILE]

Serves the registry until SIGTERM or SIGINT, then drains: /readyz answers 503 at once,
the listeners keep serving for http.draindelay, then close, and in-flight requests get
http.draintimeout to finish (exit status 1 if some must be cut). A second signal stops
at once.

Flags:
`

const checkUsage = `Usage: registryd config check [-c FILE | FILE]

Loads the configuration (file and REGISTRY_* environment) as serve would, reports every
problem, and prints the effective configuration (defaults included) with secrets masked.
Exit status 0 when it is valid, 2 otherwise.

Flags:
`

// usageError is a command-line mistake (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// configFlags parses "[-c FILE | FILE]" for command name, with the command's own flags
// that each extra defines; it returns the file ("" for none) or flag.ErrHelp after
// printing help to stdout.
func configFlags(name, help string, args []string, stdout io.Writer, extra ...func(*flag.FlagSet)) (string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var file string
	fs.StringVar(&file, "c", "", "configuration `FILE` (YAML)")
	fs.StringVar(&file, "config", "", "configuration `FILE` (YAML), same as -c")
	for _, define := range extra {
		define(fs)
	}
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, help)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return "", err
		}
		return "", &usageError{fmt.Sprintf("%s: %v (see registryd %s --help)", name, err, name)}
	}
	switch rest := fs.Args(); {
	case len(rest) > 1:
		return "", &usageError{fmt.Sprintf("%s: one configuration file at most, got %q (see registryd %s --help)", name, rest, name)}
	case len(rest) == 1 && file != "":
		return "", &usageError{fmt.Sprintf("%s: give the configuration file once, with -c or as an argument", name)}
	case len(rest) == 1:
		if strings.HasPrefix(rest[0], "-") {
			return "", &usageError{fmt.Sprintf("%s: flags go before the file: %q", name, rest[0])}
		}
		file = rest[0]
	}
	return file, nil
}

// loadConfig loads file ("" for none) with the environment environ.
func loadConfig(file string, environ []string) (*config.Config, error) {
	if file == "" {
		return config.Load(nil, environ)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	return config.Load(f, environ)
}

// configCheck implements "registryd config check".
func configCheck(args []string, environ []string, stdout, stderr io.Writer) int {
	file, err := configFlags("config check", checkUsage, args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "registryd:", err)
		return exitUsage
	}
	cfg, err := loadConfig(file, environ)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(stderr, "registryd:", line)
		}
		return exitUsage
	}
	for _, n := range cfg.Ignored {
		fmt.Fprintf(stderr, "registryd: %s: %s: %s\n", strings.ToLower(n.Level.String()), n.Key, n.Reason)
	}
	out, err := cfg.MarshalMasked()
	if err != nil {
		fmt.Fprintln(stderr, "registryd:", err)
		return exitFailure
	}
	_, _ = stdout.Write(out)
	return exitOK
}

// version is set at build time with -ldflags "-X main.version=..."; it overrides the
// module version from the build information.
var version = ""

// buildInfo describes the running binary.
type buildInfo struct {
	Version   string // module version, the -X override, or "devel"
	Revision  string // VCS revision, "" when not stamped
	Time      string // VCS commit time
	Modified  bool   // the work tree had uncommitted changes
	GoVersion string
}

// readBuildInfo takes the version from override (main.version) or the module version,
// and the VCS revision Go stamps into binaries built in a checkout (not with
// -buildvcs=false, nor with go run).
func readBuildInfo(bi *debug.BuildInfo, ok bool, override string) buildInfo {
	b := buildInfo{Version: override}
	if ok {
		b.GoVersion = bi.GoVersion
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// String is the one-line version: "v1.2.0", or "devel+0123456789ab" (with "-modified"
// when the tree was dirty).
func (b buildInfo) String() string {
	s := b.Version
	if b.Revision != "" && !strings.Contains(s, shortRev(b.Revision)) {
		s += "+" + shortRev(b.Revision)
		if b.Modified {
			s += "-modified"
		}
	}
	return s
}

// Long is the output of "registryd version".
func (b buildInfo) Long() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "registryd %s\n", b.Version)
	if b.Revision != "" {
		mod := ""
		if b.Modified {
			mod = " (with uncommitted changes)"
		}
		fmt.Fprintf(&sb, "revision: %s%s\n", b.Revision, mod)
		if b.Time != "" {
			fmt.Fprintf(&sb, "commit time: %s\n", b.Time)
		}
	} else {
		fmt.Fprintln(&sb, "revision: unknown (built without VCS information: go run, -buildvcs=false, or outside a git checkout)")
	}
	if b.GoVersion != "" {
		fmt.Fprintf(&sb, "go: %s\n", b.GoVersion)
	}
	return sb.String()
}

func shortRev(r string) string { return r[:min(len(r), 12)] }

func currentBuild() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	return readBuildInfo(bi, ok, version)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/storage"
)

const migrateUsage = `Usage: registryd migrate --from OLD.yml --to NEW.yml [flags]

Copies every repository (blobs, manifests, tags, referrers) from the storage of the
--from configuration to the storage of the --to configuration, with the drivers, retry
policy (storage.retry) and credentials serve uses for each. Only the storage and log
sections of the files matter; REGISTRY_* environment overrides are not applied (they
would apply to both files alike).

Blobs stream from backend to backend, --concurrency at a time, each once however many
repositories use it, verified against its digest as it streams (a mismatch is reported
and nothing is written). What the destination already holds is skipped, so the command
can be run again after an interruption, and once more during a read-only window to
finish a switch. Tags are written last, after everything they reference. Nothing is
ever deleted at the destination: what was deleted from the source since an earlier
run stays there.

Progress goes to stderr: a progress bar on a terminal, a line every --progress-interval
otherwise. The final report goes to stdout (JSON with --json). SIGINT or SIGTERM stops
cleanly: in-flight writes are abandoned, no tag is written for incomplete content.

Exit status: 0 when everything was copied (or was already there), 1 when an object
failed or the run was interrupted, 2 on a command-line or configuration mistake.

Flags:
`

// migrateFlags is the parsed command line of "registryd migrate".
type migrateFlags struct {
	from, to    string
	repos       string
	concurrency int
	dryRun      bool
	interval    time.Duration
	json        bool
}

func parseMigrateFlags(args []string, stdout io.Writer) (migrateFlags, error) {
	var f migrateFlags
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.from, "from", "", "configuration `FILE` of the source registry (required)")
	fs.StringVar(&f.to, "to", "", "configuration `FILE` of the destination registry (required)")
	fs.StringVar(&f.repos, "repos", "", "copy only the repositories matching `GLOB` (path.Match; * stops at /, a trailing /** takes a subtree)")
	fs.IntVar(&f.concurrency, "concurrency", 8, "blobs copied at once (and links written at once)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "count what would be copied; write nothing")
	fs.DurationVar(&f.interval, "progress-interval", 10*time.Second, "time between progress lines when stderr is not a terminal (0: none)")
	fs.BoolVar(&f.json, "json", false, "print the final report as JSON")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, migrateUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return f, err
		}
		return f, &usageError{fmt.Sprintf("migrate: %v (see registryd migrate --help)", err)}
	}
	switch {
	case fs.NArg() > 0:
		return f, &usageError{fmt.Sprintf("migrate: unexpected argument %q (see registryd migrate --help)", fs.Arg(0))}
	case f.from == "" || f.to == "":
		return f, &usageError{"migrate: --from and --to are both required (see registryd migrate --help)"}
	case filepath.Clean(f.from) == filepath.Clean(f.to):
		return f, &usageError{fmt.Sprintf("migrate: --from and --to name the same configuration %q: a store cannot be migrated onto itself", f.from)}
	case f.concurrency < 1:
		return f, &usageError{"migrate: --concurrency must be at least 1"}
	case f.interval < 0:
		return f, &usageError{"migrate: --progress-interval must not be negative"}
	}
	return f, nil
}

// runMigrate implements "registryd migrate" and returns the exit status.
func runMigrate(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	f, err := parseMigrateFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "registryd:", err)
		return exitUsage
	}
	// REGISTRY_* overrides would apply to both files: leave them out.
	var env []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	var cfgs [2]*config.Config
	for i, file := range []string{f.from, f.to} {
		cfg, err := loadConfig(file, env)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				fmt.Fprintf(stderr, "registryd: %s: %s\n", file, line)
			}
			return exitUsage
		}
		cfgs[i] = cfg
	}
	out := newProgressOut(stderr)
	log := newLogger(cfgs[1].Log, out)
	src, err := openStorage(ctx, cfgs[0], log)
	if err != nil {
		fmt.Fprintf(stderr, "registryd: source (%s): %v\n", f.from, err)
		return exitFailure
	}
	dst, err := openStorage(ctx, cfgs[1], log)
	if err != nil {
		fmt.Fprintf(stderr, "registryd: destination (%s): %v\n", f.to, err)
		return exitFailure
	}
	m, err := storage.NewMigration(src, dst, storage.MigrateOptions{
		Repositories: f.repos,
		Concurrency:  f.concurrency,
		DryRun:       f.dryRun,
		Logger:       log,
	})
	if err != nil {
		fmt.Fprintln(stderr, "registryd: migrate:", err)
		return exitUsage
	}
	log.Info("migrate: starting", "from", src.Name(), "to", dst.Name(), "repos", f.repos, "concurrency", f.concurrency, "dryrun", f.dryRun)
	start := time.Now()
	stopProgress := out.start(m, start, f.interval)
	rep, err := m.Run(ctx)
	stopProgress()
	took := time.Since(start)
	if f.json {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		printMigrateReport(stdout, rep, took)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(stderr, "registryd: migrate: interrupted; run the same command again to continue")
		return exitFailure
	case err != nil:
		fmt.Fprintln(stderr, "registryd: migrate:", err)
		return exitFailure
	case rep.Failed > 0:
		fmt.Fprintf(stderr, "registryd: migrate: %d objects failed (listed above)\n", rep.Failed)
		return exitFailure
	}
	return exitOK
}

// printMigrateReport writes the final report as text.
func printMigrateReport(w io.Writer, rep storage.MigrateReport, took time.Duration) {
	verb := "copied"
	if rep.DryRun {
		verb = "to copy"
		fmt.Fprintln(w, "dry run: nothing was written")
	}
	fmt.Fprintf(w, "repositories: %d\n", rep.Repositories)
	fmt.Fprintf(w, "blobs:        %d %s (%s), %d skipped (%s, already there), %d failed\n",
		rep.BlobsCopied, verb, formatBytes(rep.BytesCopied), rep.BlobsSkipped, formatBytes(rep.BytesSkipped), rep.BlobsFailed)
	fmt.Fprintf(w, "manifests:    %d %s, %d skipped\n", rep.Manifests, verb, rep.ManifestsSkipped)
	fmt.Fprintf(w, "tags:         %d %s, %d skipped\n", rep.Tags, verb, rep.TagsSkipped)
	fmt.Fprintf(w, "referrers:    %d %s, %d skipped\n", rep.Referrers, verb, rep.ReferrersSkipped)
	fmt.Fprintf(w, "links:        %d %s, %d skipped\n", rep.Links, verb, rep.LinksSkipped)
	rate := ""
	if s := took.Seconds(); s > 0 && !rep.DryRun {
		rate = fmt.Sprintf(", %s/s", formatBytes(int64(float64(rep.BytesCopied)/s)))
	}
	fmt.Fprintf(w, "time:         %s%s\n", formatDuration(took), rate)
	if rep.Deferred > 0 {
		fmt.Fprintf(w, "deferred:     %d manifests and tags reference content pushed during the run: run again\n", rep.Deferred)
	}
	fmt.Fprintf(w, "failed:       %d\n", rep.Failed)
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "  %s: %s\n", f.Object, f.Reason)
	}
}

// progressOut is stderr for a migration: on a terminal it redraws a one-line progress
// bar and clears it before any other output (log lines), so the two never mix.
type progressOut struct {
	w        io.Writer
	terminal bool
	width    int // the terminal's columns (0: unknown)

	mu   sync.Mutex
	line bool // a progress bar is on screen
}

func newProgressOut(w io.Writer) *progressOut {
	p := &progressOut{w: w}
	if f, ok := w.(*os.File); ok {
		p.terminal = term.IsTerminal(int(f.Fd()))
		if p.terminal {
			p.width, _, _ = term.GetSize(int(f.Fd()))
		}
	}
	return p
}

// Write implements io.Writer: it clears the progress bar first.
func (p *progressOut) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.line {
		fmt.Fprint(p.w, "\r\033[K")
		p.line = false
	}
	return p.w.Write(b)
}

// start shows m's progress until the returned function is called: a bar redrawn four
// times a second on a terminal, else a line every interval (none when interval is 0).
func (p *progressOut) start(m *storage.Migration, start time.Time, interval time.Duration) func() {
	every := interval
	if p.terminal {
		every = 250 * time.Millisecond
	}
	if every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.show(m.Progress(), time.Since(start))
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.line {
			fmt.Fprint(p.w, "\r\033[K")
			p.line = false
		}
	}
}

func (p *progressOut) show(s storage.MigrateStats, elapsed time.Duration) {
	line := progressLine(s, elapsed, p.terminal)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		if p.width > 1 && len(line) >= p.width {
			line = line[:p.width-1] // a wrapped line could not be redrawn in place
		}
		fmt.Fprint(p.w, "\r\033[K"+line)
		p.line = true
		return
	}
	fmt.Fprintln(p.w, line)
}

// progressLine renders s: phase, blobs done of total, bytes, rate, time left, and on a
// terminal a bar over the bytes.
func progressLine(s storage.MigrateStats, elapsed time.Duration, bar bool) string {
	if s.Phase == storage.PhasePlanning {
		return fmt.Sprintf("migrate: planning: %d repositories, %d blobs to copy (%s), %d already there",
			s.Repositories, s.Blobs, formatBytes(s.Bytes), s.BlobsSkipped)
	}
	done := min(s.BytesStreamed, s.Bytes)
	rate := 0.0
	if sec := elapsed.Seconds(); sec > 0 {
		rate = float64(s.BytesStreamed) / sec
	}
	eta := "--"
	if rate > 0 && s.Bytes > done {
		eta = formatDuration(time.Duration(float64(s.Bytes-done) / rate * float64(time.Second)).Round(time.Second))
	} else if s.Bytes <= done {
		eta = "0s"
	}
	var b strings.Builder
	b.WriteString("migrate: ")
	if bar {
		const width = 24
		filled := width
		if s.Bytes > 0 {
			filled = int(float64(width) * float64(done) / float64(s.Bytes))
		}
		b.WriteString("[" + strings.Repeat("=", filled) + strings.Repeat(" ", width-filled) + "] ")
	}
	fmt.Fprintf(&b, "%s: %d/%d blobs  %s/%s  %s/s  ETA %s  skipped %d  failed %d",
		s.Phase, s.BlobsCopied+s.BlobsFailed, s.Blobs, formatBytes(done), formatBytes(s.Bytes), formatBytes(int64(rate)), eta, s.BlobsSkipped, s.Failed)
	return b.String()
}

// formatBytes writes n with a binary unit: "512 B", "1.5 MiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

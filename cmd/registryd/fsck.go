package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/registryd/registryd/storage"
)

// Exit statuses of registryd fsck.
const (
	fsckClean    = 0
	fsckFindings = 1
	fsckError    = 2
)

const fsckUsage = `Usage: registryd fsck [-c FILE | FILE] [flags]

Checks the stored registry the configuration points at: every repository's layer and
manifest links against the blob store, every manifest's config, layers and index
children, every tag, every referrer record, orphan blobs and, with --verify-digests,
the bytes of every blob. Prints one line per finding (or a JSON object per line with
--json) and a summary. Safe on a live registry.

--repair removes only what is safe, each object re-checked just before: links with no
blob data behind them and referrer records whose referrer manifest is gone. Tags whose
manifest is gone (or whose link is corrupt) are removed only with --repair-tags (which
implies --repair). Blob data is never removed: orphans are garbage collection's job.

Exit status: 0 nothing found, 1 findings (repaired or not), 2 an error (a backend
error aborts the run and is never reported as a finding; or a command-line mistake or an
invalid configuration).

Flags:
`

// fsckFlags is the parsed command line of registryd fsck.
type fsckFlags struct {
	file     string
	opts     storage.FsckOptions
	json     bool
	parallel int
}

// parseFsckFlags parses the command line; flag.ErrHelp after printing help to stdout.
func parseFsckFlags(args []string, stdout io.Writer) (fsckFlags, error) {
	var f fsckFlags
	file, err := configFlags("fsck", fsckUsage, args, stdout, func(fs *flag.FlagSet) {
		fs.BoolVar(&f.opts.VerifyDigests, "verify-digests", false, "hash every blob's bytes (reads the whole store)")
		fs.BoolVar(&f.opts.Repair, "repair", false, "remove dangling links and referrer records (never blob data)")
		fs.BoolVar(&f.opts.RepairTags, "repair-tags", false, "also remove tags whose manifest is gone (implies --repair)")
		fs.StringVar(&f.opts.Repositories, "repos", "", "check only the repositories matching `GLOB` (path.Match; * stops at /, a trailing /** takes a subtree; orphans are not looked for)")
		fs.BoolVar(&f.json, "json", false, "print findings and the summary as JSON, one object per line")
		fs.IntVar(&f.parallel, "parallel", 16, "backend calls in flight")
	})
	if err != nil {
		return f, err
	}
	f.file = file
	if f.parallel < 1 {
		return f, &usageError{"fsck: --parallel must be at least 1"}
	}
	f.opts.Repair = f.opts.Repair || f.opts.RepairTags
	f.opts.Parallel = f.parallel
	return f, nil
}

// runFsck implements "registryd fsck" and returns its exit status.
func runFsck(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	flags, err := parseFsckFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return fsckClean
	}
	if err != nil {
		fmt.Fprintln(stderr, "registryd:", err)
		return fsckError
	}
	cfg, err := loadConfig(flags.file, environ)
	if err != nil {
		fmt.Fprintln(stderr, "registryd: fsck:", err)
		return fsckError
	}
	if flags.opts.Repair && cfg.Storage.Maintenance.ReadOnly.Enabled {
		fmt.Fprintln(stderr, "registryd: fsck: --repair on a registry in storage.maintenance.readonly mode")
		return fsckError
	}
	log := newLogger(cfg.Log, stderr)
	d, err := openStorage(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "registryd: fsck:", err)
		return fsckError
	}
	secret := make([]byte, 32) // fsck starts no upload: any secret does
	_, _ = rand.Read(secret)
	reg, err := storage.New(d, storage.Options{Secret: secret, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "registryd: fsck:", err)
		return fsckError
	}
	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	flags.opts.Report = func(f storage.Finding) {
		mu.Lock()
		defer mu.Unlock()
		if flags.json {
			_ = enc.Encode(f)
		} else {
			fmt.Fprintln(stdout, f.String())
		}
	}
	start := time.Now()
	sum, err := reg.Fsck(ctx, flags.opts)
	if err != nil {
		fmt.Fprintf(stderr, "registryd: %v (run aborted)\n", err)
		return fsckError
	}
	if flags.json {
		_ = enc.Encode(map[string]any{"summary": sum})
	} else {
		fmt.Fprintln(stdout, summaryLine(sum, time.Since(start)))
	}
	if sum.Total() > 0 {
		return fsckFindings
	}
	return fsckClean
}

// summaryLine is the human-readable summary of a run.
func summaryLine(s storage.FsckSummary, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "fsck: %d repositories, %d tags, %d manifests, %d layer links, %d referrer records, %d blobs",
		s.Repositories, s.Tags, s.Manifests, s.LayerLinks, s.Referrers, s.Blobs)
	if s.BlobsVerified > 0 {
		fmt.Fprintf(&b, " (%d verified, %d bytes)", s.BlobsVerified, s.BytesVerified)
	}
	if !s.OrphansChecked {
		b.WriteString("; orphans not looked for (--repos)")
	}
	fmt.Fprintf(&b, " in %s: ", took.Round(time.Millisecond))
	if s.Total() == 0 {
		b.WriteString("no findings")
		return b.String()
	}
	kinds := make([]string, 0, len(s.Findings))
	for k, n := range s.Findings {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(kinds)
	fmt.Fprintf(&b, "%d findings (%s), %d repaired", s.Total(), strings.Join(kinds, ", "), s.Repaired)
	return b.String()
}

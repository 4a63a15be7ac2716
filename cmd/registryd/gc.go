package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/storage"
)

// gcMetrics are the garbage collector's Prometheus metrics.
type gcMetrics struct {
	runs         *prometheus.CounterVec
	duration     prometheus.Histogram
	deleted      *prometheus.CounterVec
	deletedBytes prometheus.Counter
	lastSuccess  prometheus.Gauge
}

func newGCMetrics(reg prometheus.Registerer) (*gcMetrics, error) {
	m := &gcMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registryd_gc_runs_total",
			Help: "Garbage collection runs of this replica by result: ok, dryrun, error (nothing more deleted after the error), skipped (another replica held the lease).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "registryd_gc_duration_seconds", Help: "Duration of the garbage collection runs this replica made.",
			Buckets: prometheus.ExponentialBuckets(0.1, 4, 10),
		}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registryd_gc_deleted_objects_total", Help: "Objects garbage collection deleted, by kind (tag, manifest, tagindex, referrer, link, blob).",
		}, []string{"kind"}),
		deletedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registryd_gc_deleted_bytes_total", Help: "Bytes of blobs garbage collection deleted.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registryd_gc_last_success_timestamp_seconds", Help: "When this replica last finished a garbage collection run without error.",
		}),
	}
	for _, c := range []prometheus.Collector{m.runs, m.duration, m.deleted, m.deletedBytes, m.lastSuccess} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"ok", "dryrun", "error", "skipped"} {
		m.runs.WithLabelValues(r)
	}
	return m, nil
}

// record counts a run's outcome.
func (m *gcMetrics) record(rep *storage.GCReport, err error) {
	switch {
	case errors.Is(err, storage.ErrLeaseHeld):
		m.runs.WithLabelValues("skipped").Inc()
		return
	case err != nil:
		m.runs.WithLabelValues("error").Inc()
	case rep.DryRun:
		m.runs.WithLabelValues("dryrun").Inc()
	default:
		m.runs.WithLabelValues("ok").Inc()
		m.lastSuccess.SetToCurrentTime()
	}
	if rep == nil {
		return
	}
	m.duration.Observe(rep.Duration.Seconds())
	if !rep.DryRun {
		for k, n := range rep.Deleted {
			m.deleted.WithLabelValues(k).Add(float64(n))
		}
		m.deletedBytes.Add(float64(rep.DeletedBytes))
	}
}

// gcOptions turns storage.gc into the options of a run.
func gcOptions(g config.GC, log *slog.Logger) storage.GCOptions {
	opts := storage.GCOptions{
		GracePeriod:         g.GracePeriod,
		KeepUntagged:        !*g.Untagged,
		UntaggedGracePeriod: g.UntaggedGracePeriod,
		DryRun:              g.DryRun,
		Logger:              log,
	}
	for _, r := range g.Retention {
		opts.Retention = append(opts.Retention, storage.RetentionRule{
			Repository: r.Repository, KeepLast: r.KeepLast, KeepTags: r.KeepTags, OlderThan: r.OlderThan, Pinned: r.Pinned,
		})
	}
	return opts
}

// collectGarbage runs storage.gc in the background of serve until ctx ends, at the times
// periodically chooses. A run another replica holds the lease for is skipped. A
// read-only registry does not collect.
func collectGarbage(ctx context.Context, reg *storage.Registry, cfg *config.Config, log *slog.Logger, m *gcMetrics) {
	g := cfg.Storage.GC
	if !g.Enabled || cfg.Storage.Maintenance.ReadOnly.Enabled {
		return
	}
	periodically(ctx, g.Interval, func() {
		rep, err := reg.RunGC(ctx, gcOptions(g, log), storage.LeaseOptions{})
		if ctx.Err() != nil {
			return
		}
		m.record(rep, err)
		if errors.Is(err, storage.ErrLeaseHeld) {
			log.Info("garbage collection skipped: another replica is running it", "error", err)
		}
	})
}

const gcUsage = `Usage: registryd gc [--dry-run] [--plan FILE] [-c FILE | FILE]

Runs one garbage collection now with the configuration's storage.gc settings (whether
or not storage.gc.enabled is set), under the lease every replica uses: if a replica is
collecting at the moment, it exits 1 saying so.

  --dry-run   compute the plan and delete nothing; the plan (JSON) is printed on stdout
              and written to docker/registry/v2/_gc/plan.json
  --plan FILE apply the plan in FILE (from a dry run): each item is deleted only if it
              still qualifies when the run re-verifies it; nothing outside the plan is

A summary goes to stderr. Exit status 0 on success, 1 on failure, 2 on a usage error.

Flags:
`

// runGCCommand implements "registryd gc".
func runGCCommand(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gc", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var file, planFile string
	var dry bool
	fs.StringVar(&file, "c", "", "configuration `FILE` (YAML)")
	fs.StringVar(&file, "config", "", "configuration `FILE` (YAML), same as -c")
	fs.BoolVar(&dry, "dry-run", false, "compute and print the plan, delete nothing")
	fs.StringVar(&planFile, "plan", "", "apply the plan in `FILE`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, gcUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return exitOK
		}
		fmt.Fprintf(stderr, "registryd: gc: %v (see registryd gc --help)\n", err)
		return exitUsage
	}
	switch {
	case fs.NArg() > 1 || (fs.NArg() == 1 && file != ""):
		fmt.Fprintln(stderr, "registryd: gc: one configuration file at most")
		return exitUsage
	case fs.NArg() == 1:
		file = fs.Arg(0)
	}
	if dry && planFile != "" {
		fmt.Fprintln(stderr, "registryd: gc: --dry-run and --plan exclude each other")
		return exitUsage
	}
	cfg, err := loadConfig(file, environ)
	if err != nil {
		for _, p := range config.Errors(err) {
			fmt.Fprintf(stderr, "registryd: %s: %s\n", p.Key, p.Msg)
		}
		if len(config.Errors(err)) == 0 {
			fmt.Fprintln(stderr, "registryd:", err)
		}
		return exitUsage
	}
	opts := gcOptions(cfg.Storage.GC, newLogger(cfg.Log, stderr))
	opts.DryRun = opts.DryRun || dry
	if planFile != "" {
		f, err := os.Open(planFile)
		if err != nil {
			fmt.Fprintln(stderr, "registryd: gc:", err)
			return exitUsage
		}
		opts.Apply, err = storage.DecodeGCPlan(f)
		f.Close()
		if err != nil {
			fmt.Fprintln(stderr, "registryd: gc:", err)
			return exitUsage
		}
		opts.DryRun = false
	}
	log := newLogger(cfg.Log, stderr)
	d, err := openStorage(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "registryd: gc:", err)
		return exitFailure
	}
	reg, err := storage.New(d, storage.Options{Secret: []byte("registryd gc: signs no upload token"), Logger: log,
		Collected: true, GCAnnounce: cfg.Storage.GC.Announce})
	if err != nil {
		fmt.Fprintln(stderr, "registryd: gc:", err)
		return exitFailure
	}
	rep, err := reg.RunGC(ctx, opts, storage.LeaseOptions{})
	if err != nil {
		fmt.Fprintln(stderr, "registryd: gc:", err)
		return exitFailure
	}
	if rep.DryRun {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep.Plan); err != nil {
			fmt.Fprintln(stderr, "registryd: gc:", err)
			return exitFailure
		}
	}
	verb := "deleted"
	if rep.DryRun {
		verb = "would delete"
	}
	fmt.Fprintf(stderr, "registryd: gc: %d repositories; %s %v, %d bytes; %d skipped on re-verification; %d backend calls in %s\n",
		rep.Repositories, verb, rep.Deleted, rep.DeletedBytes, rep.Skipped, rep.BackendCalls, rep.Duration.Round(time.Millisecond))
	return exitOK
}

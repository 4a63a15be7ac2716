// Command registryd is an OCI Distribution v1.1 registry server over object storage.
//
//	registryd [serve] [-c FILE | FILE]       serve the registry (no file: filesystem under ./data, :5000)
//	registryd config check [-c FILE | FILE]  validate the configuration, print it with secrets masked
//	registryd gc [--dry-run] [--plan FILE] [-c FILE | FILE]  run one garbage collection now
//	registryd version                        print the version and build information
//	registryd fsck [-c FILE | FILE] [flags]  check the stored registry, repair what is safe (exit 0/1/2)
//	registryd selftest [-insecure] URL       push and pull a blob through a running registry (helm test)
//	registryd sleep DURATION                 wait (the Helm chart's preStop pause; the image has no shell)
//	registryd migrate --from OLD --to NEW    copy every repository from one backend to another
//
// Exit status: 0 on success, 1 on a runtime failure (including a drain that timed out),
// 2 on a command-line mistake or an invalid configuration.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/handlers"
	"github.com/registryd/registryd/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		// After the first signal the default handling is back: a second one ends the
		// process at once, without waiting for the drain.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit status. serve runs until ctx
// is cancelled (SIGTERM, SIGINT).
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		cmd, args = "help", nil
	} else if len(args) > 0 && (args[0] == "-v" || args[0] == "--version") {
		cmd, args = "version", nil
	}
	switch cmd {
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "version":
		fmt.Fprint(stdout, currentBuild().Long())
		return exitOK
	case "config":
		if len(args) > 0 && args[0] == "check" {
			return configCheck(args[1:], environ, stdout, stderr)
		}
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, checkUsage)
			return exitOK
		}
		fmt.Fprintln(stderr, "registryd: config: want the subcommand check (see registryd --help)")
		return exitUsage
	case "serve":
		file, err := configFlags("serve", serveUsage, args, stdout)
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		if err != nil {
			fmt.Fprintln(stderr, "registryd:", err)
			return exitUsage
		}
		cfg, err := loadConfig(file, environ)
		if err != nil {
			log := bootLogger(stderr, file, environ)
			problems := config.Errors(err)
			if len(problems) == 0 {
				log.Error("invalid configuration", "error", err)
			}
			for _, p := range problems {
				attrs := []any{"key", p.Key, "error", p.Msg}
				if p.Source != "" {
					attrs = append(attrs, "source", p.Source)
				}
				log.Error("invalid configuration", attrs...)
			}
			return exitUsage
		}
		log := newLogger(cfg.Log, stderr)
		if err := serve(ctx, cfg, log); err != nil {
			log.Error("registryd stopped on an error", "error", err)
			return exitFailure
		}
		return exitOK
	case "gc":
		return runGCCommand(ctx, args, environ, stdout, stderr)
	case "selftest":
		return commandStatus(stderr, runSelftest(ctx, args, stdout, os.Getenv))
	case "sleep":
		return commandStatus(stderr, runSleep(ctx, args))
	case "fsck":
		return runFsck(ctx, args, environ, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, args, environ, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "registryd: unknown command %q (want serve, config check, gc, version, fsck, migrate, selftest, sleep or help)\n", cmd)
		return exitUsage
	}
}

// purgeUploads removes old uploads (storage.maintenance.uploadpurging) until ctx ends, at
// the times periodically chooses. A read-only registry does not purge.
func purgeUploads(ctx context.Context, reg *storage.Registry, cfg *config.Config, log *slog.Logger) {
	up := cfg.Storage.Maintenance.UploadPurging
	if !*up.Enabled || cfg.Storage.Maintenance.ReadOnly.Enabled {
		return
	}
	periodically(ctx, up.Interval, func() {
		start := time.Now()
		n, err := reg.PurgeUploads(ctx, start.Add(-up.Age), up.DryRun)
		if err != nil && ctx.Err() == nil {
			log.Warn("upload purging failed", "purged", n, "dryrun", up.DryRun, "error", err)
		} else if err == nil {
			log.Info("upload purging done", "purged", n, "dryrun", up.DryRun, "age", up.Age, "took", time.Since(start))
		}
	})
}

// periodically calls run until ctx ends: first after a random delay of up to a minute (or
// of the interval, when shorter), then every interval give or take a tenth at random, so
// replicas started together do not contend in step. run is never called concurrently.
func periodically(ctx context.Context, interval time.Duration, run func()) {
	delay := time.Duration(mathrand.Int64N(int64(min(interval, time.Minute)) + 1))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		run()
		delay = interval + time.Duration(mathrand.Int64N(int64(interval/5)+1)) - interval/10
	}
}

// errDrainTimeout is returned by serve when requests were still running at the end of
// http.draintimeout and had to be cut.
var errDrainTimeout = errors.New("drain timed out: in-flight requests were cut")

// serve runs the registry until ctx is cancelled, then drains: readiness fails at once,
// the listeners keep serving for http.draindelay, then close, and in-flight requests get
// http.draintimeout to finish (errDrainTimeout when they do not).
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	metrics := prometheus.NewRegistry()
	authz, watchAuth, err := newAuth(cfg.Auth, log, metrics)
	if err != nil {
		return err
	}
	go watchAuth(ctx)
	tlsConfig, err := newTLSConfig(cfg.HTTP, log)
	if err != nil {
		return err
	}
	d, err := openStorage(ctx, cfg, log)
	if err != nil {
		return err
	}
	eff := effectiveSettings(ctx, cfg, d)
	secret := signingKey(cfg.HTTP.Secret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	reg, err := storage.New(d, storage.Options{
		Secret:         secret,
		Redirect:       eff.redirect,
		RedirectExpiry: cfg.Storage.Redirect.Expiry,
		AllowSparse:    cfg.Validation.Manifests.AllowSparse,
		TouchOnHead:    cfg.Storage.GC.Enabled && !cfg.Storage.Maintenance.ReadOnly.Enabled,
		Collected:      cfg.Storage.GC.Enabled,
		GCAnnounce:     cfg.Storage.GC.Announce,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	check := reg.PingWrite
	if cfg.Storage.Maintenance.ReadOnly.Enabled {
		check = reg.Ping
	}
	ready := handlers.NewReadiness(check, handlers.DefaultReadinessInterval, log)
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e, err := handlers.New(handlers.Options{
		Registry:         reg,
		Logger:           log,
		DeleteEnabled:    cfg.Storage.Delete.Enabled,
		ReadOnly:         cfg.Storage.Maintenance.ReadOnly.Enabled,
		MaxManifestBytes: cfg.Limits.MaxManifestBytes,
		MaxListEntries:   cfg.Limits.MaxListEntries,
		Metrics:          metrics,
		ServeOps:         cfg.HTTP.Debug.Addr == "",
		Auth:             authz,
		AbsoluteURLs:     cfg.HTTP.AbsoluteURLs(),
		Host:             cfg.HTTP.HostURL(),
		Readiness:        ready,
		NoAccessLog:      cfg.Log.AccessLog.Disabled,
		Prefix:           strings.TrimSuffix(cfg.HTTP.Prefix, "/"),
	})
	if err != nil {
		return err
	}
	servers := []*http.Server{{Addr: cfg.HTTP.Addr, Handler: withHeaders(e, cfg.HTTP.Headers), ReadHeaderTimeout: 30 * time.Second, TLSConfig: tlsConfig,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
	if cfg.HTTP.Debug.Addr != "" {
		servers = append(servers, &http.Server{Addr: cfg.HTTP.Debug.Addr, Handler: handlers.NewOps(ready, metrics),
			ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	}
	listeners := make([]net.Listener, 0, len(servers))
	for _, s := range servers {
		l, err := net.Listen("tcp", s.Addr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("listen on %s: %w", s.Addr, err)
		}
		listeners = append(listeners, l)
	}
	eff.log(log, cfg, d, listeners)
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- serveListener(s, listeners[i]) }()
	}
	purgeCtx, stopPurging := context.WithCancel(ctx)
	purged := make(chan struct{})
	go func() {
		defer close(purged)
		purgeUploads(purgeCtx, reg, cfg, log)
	}()
	defer func() { stopPurging(); <-purged }()
	gcMetrics, err := newGCMetrics(metrics)
	if err != nil {
		return err
	}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		collectGarbage(purgeCtx, reg, cfg, log, gcMetrics)
	}()
	defer func() { stopPurging(); <-collected }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	return drain(log, cfg.HTTP, ready, servers)
}

// drain shuts the servers down after a stop signal (see serve).
func drain(log *slog.Logger, cfg config.HTTP, ready *handlers.Readiness, servers []*http.Server) error {
	ready.Drain()
	if cfg.DrainDelay > 0 {
		log.Info("stop signal: /readyz answers 503; serving on while load balancers notice", "draindelay", cfg.DrainDelay)
		time.Sleep(cfg.DrainDelay)
	}
	log.Info("draining: listeners closed, waiting for in-flight requests", "draintimeout", cfg.DrainTimeout)
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	var firstErr error
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			_ = s.Close() // cut what is still running
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if errors.Is(firstErr, context.DeadlineExceeded) {
		return fmt.Errorf("%w after http.draintimeout (%s)", errDrainTimeout, cfg.DrainTimeout)
	}
	if firstErr != nil {
		return fmt.Errorf("shutdown: %w", firstErr)
	}
	log.Info("stopped: every in-flight request finished", "took", time.Since(start))
	return nil
}

// withHeaders adds http.headers to every response of h.
func withHeaders(h http.Handler, headers map[string][]string) http.Handler {
	if len(headers) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, vs := range headers {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		h.ServeHTTP(w, r)
	})
}

// commandStatus reports a one-shot command's error on stderr and turns it into the exit
// status: 0 when it succeeded, 1 otherwise.
func commandStatus(stderr io.Writer, err error) int {
	if err != nil {
		fmt.Fprintln(stderr, "registryd:", err)
		return exitFailure
	}
	return exitOK
}

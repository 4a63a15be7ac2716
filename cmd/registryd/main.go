// Command registryd is an OCI Distribution v1.1 registry server over object storage.
//
//	registryd serve [config.yml]   serve the registry (no file: filesystem under ./data, :5000)
//	registryd version              print the version
//	registryd selftest URL         push and pull a blob through a running registry (helm test)
//	registryd sleep DURATION       wait (the Helm chart's preStop pause; the image has no shell)
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/handlers"
	"github.com/registryd/registryd/storage"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "registryd:", err)
		os.Exit(1)
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

func run(args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "registryd", versionString())
		return nil
	case "serve":
		if len(args) > 1 {
			return errors.New("usage: registryd serve [config.yml]")
		}
		var cfg *config.Config
		var err error
		if len(args) == 1 {
			cfg, err = config.LoadFile(args[0])
		} else {
			cfg, err = config.Load(nil, os.Environ())
		}
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return serve(ctx, cfg, stderr)
	case "selftest":
		return runSelftest(context.Background(), args, stdout, os.Getenv)
	case "sleep":
		return runSleep(context.Background(), args)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: registryd serve [config.yml] | registryd version | registryd selftest [-insecure] URL | registryd sleep DURATION")
		return nil
	default:
		return fmt.Errorf("unknown command %q (want serve, version, selftest or sleep)", cmd)
	}
}

func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Formatter == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// purgeUploads removes old uploads (storage.maintenance.uploadpurging) until ctx ends:
// first after a random delay of up to a minute (or of the interval, when shorter), so
// replicas started together do not purge in step, then every interval. A read-only
// registry does not purge.
func purgeUploads(ctx context.Context, reg *storage.Registry, cfg *config.Config, log *slog.Logger) {
	up := cfg.Storage.Maintenance.UploadPurging
	if !*up.Enabled || cfg.Storage.Maintenance.ReadOnly.Enabled {
		return
	}
	delay := time.Duration(mathrand.Int64N(int64(min(up.Interval, time.Minute)) + 1))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		start := time.Now()
		n, err := reg.PurgeUploads(ctx, start.Add(-up.Age), up.DryRun)
		if err != nil && ctx.Err() == nil {
			log.Warn("upload purging failed", "purged", n, "dryrun", up.DryRun, "error", err)
		} else if err == nil {
			log.Info("upload purging done", "purged", n, "dryrun", up.DryRun, "age", up.Age, "took", time.Since(start))
		}
		delay = up.Interval
	}
}

// serve runs the registry until ctx is cancelled, then drains in-flight requests.
func serve(ctx context.Context, cfg *config.Config, logw io.Writer) error {
	log := newLogger(cfg.Log, logw)
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
	d, err := openDriver(ctx, cfg)
	if err != nil {
		return err
	}
	rp := cfg.Storage.Retry
	d = driver.WithRetry(d, driver.RetryPolicy{MaxAttempts: rp.MaxAttempts, BaseDelay: rp.BaseDelay, MaxDelay: rp.MaxDelay})
	secret := []byte(cfg.HTTP.Secret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
		log.Warn("http.secret is not set: generated a random one; uploads will not resume across replicas or restarts")
	} else if len(secret) < 16 {
		return errors.New("config: http.secret: must be at least 16 characters")
	}
	reg, err := storage.New(d, storage.Options{
		Secret:         secret,
		Redirect:       cfg.Storage.Redirect.Enable && !cfg.Storage.Redirect.Disable,
		RedirectExpiry: cfg.Storage.Redirect.Expiry,
		AllowSparse:    cfg.Validation.Manifests.AllowSparse,
		Logger:         log,
	})
	if err != nil {
		return err
	}
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
	})
	if err != nil {
		return err
	}
	servers := []*http.Server{{Addr: cfg.HTTP.Addr, Handler: e, ReadHeaderTimeout: 30 * time.Second, TLSConfig: tlsConfig,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
	if cfg.HTTP.Debug.Addr != "" {
		servers = append(servers, &http.Server{Addr: cfg.HTTP.Debug.Addr, Handler: handlers.NewOps(reg, metrics),
			ReadHeaderTimeout: 10 * time.Second})
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		l, err := net.Listen("tcp", s.Addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", s.Addr, err)
		}
		log.Info("listening", "addr", l.Addr().String(), "tls", s.TLSConfig != nil, "storage", d.Name(), "version", versionString())
		go func() { errc <- serveListener(s, l) }()
	}
	purgeCtx, stopPurging := context.WithCancel(ctx)
	purged := make(chan struct{})
	go func() {
		defer close(purged)
		purgeUploads(purgeCtx, reg, cfg, log)
	}()
	defer func() { stopPurging(); <-purged }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", "timeout", cfg.HTTP.DrainTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.DrainTimeout)
	defer cancel()
	var firstErr error
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("shutdown: %w", err)
		}
	}
	log.Info("stopped")
	return firstErr
}

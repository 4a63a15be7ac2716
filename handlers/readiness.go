package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
)

// DefaultReadinessInterval is how long a backend check's result answers /readyz before
// the next probe checks the backend again.
const DefaultReadinessInterval = 5 * time.Second

// errDraining is the readiness error once Drain has been called.
var errDraining = errors.New("draining: shutting down")

// Readiness answers /readyz. It reports not ready from the moment Drain is called (the
// process received SIGTERM), and otherwise the result of a backend check, run at most
// once per interval whatever the probe rate: concurrent probes share one check, and later
// ones get its cached result until the interval has passed. It is safe for concurrent use.
type Readiness struct {
	check    func(context.Context) error
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger
	draining atomic.Bool

	mu      sync.Mutex // held during a check: one backend check at a time
	checked time.Time
	last    error
}

// NewReadiness returns a Readiness over check (e.g. storage.Registry.PingWrite, or Ping
// for a read-only registry). interval <= 0 means DefaultReadinessInterval; each check
// gets at most 5 seconds. log (nil: discard) gets a warning for each failed check (at
// most one per interval) and a line when the backend is ready again.
func NewReadiness(check func(context.Context) error, interval time.Duration, log *slog.Logger) *Readiness {
	if interval <= 0 {
		interval = DefaultReadinessInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Readiness{check: check, interval: interval, timeout: 5 * time.Second, log: log}
}

// Drain makes every later Check fail: the process is shutting down.
func (r *Readiness) Drain() { r.draining.Store(true) }

// Check returns nil when the registry is ready, an error saying why not otherwise.
func (r *Readiness) Check(ctx context.Context) error {
	if r.draining.Load() {
		return errDraining
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Drain may have begun while this probe waited for another probe's check.
	if r.draining.Load() {
		return errDraining
	}
	if !r.checked.IsZero() && time.Since(r.checked) < r.interval {
		return r.last
	}
	// The check outlives a probe that gives up: its result serves the next probes.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	defer cancel()
	start := time.Now()
	err := r.check(cctx)
	switch {
	case err != nil:
		r.log.Warn("not ready: backend check failed", "took", time.Since(start), "error", err)
	case r.last != nil:
		r.log.Info("ready: backend check passed again", "took", time.Since(start))
	}
	r.last, r.checked = err, time.Now()
	if r.draining.Load() {
		return errDraining
	}
	return r.last
}

// handler serves /readyz: 200 "ok", or 503 with the reason.
func (r *Readiness) handler() echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := r.Check(c.Request().Context()); err != nil {
			msg := "backend not ready\n"
			if errors.Is(err, errDraining) {
				msg = "shutting down\n"
			}
			return c.String(http.StatusServiceUnavailable, msg)
		}
		return c.String(http.StatusOK, "ok\n")
	}
}

package storage

// Whether the bucket is garbage collected: a push pays for the protection of gc_protect.go
// only where a collector may run. See the top of gc_protect.go for the argument.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/registryd/registryd/driver"
)

// DefaultGCAnnounce is the default of Options.GCAnnounce.
const DefaultGCAnnounce = time.Minute

// collectedState is a Registry's knowledge of whether its bucket is garbage collected.
// It is shared by the copies of a Registry a GC run makes (a pointer in Registry).
type collectedState struct {
	// recheck is the period of the background checks; fresh is how long a check that
	// found nothing under _gc/ is trusted, from the moment its request was sent.
	recheck, fresh time.Duration

	mu sync.Mutex
	// collected is sticky: once set, the push protection is on for good.
	collected bool
	// absentAt is when the latest check that found _gc/ empty was sent (zero: none yet).
	absentAt time.Time
	// lastCheck is when the latest check was started; checking, whether one is running.
	lastCheck time.Time
	checking  bool
}

func newCollectedState(announce time.Duration, collected bool) *collectedState {
	return &collectedState{recheck: announce / 4, fresh: announce / 2, collected: collected}
}

// gcProtected reports whether a push must protect itself against a concurrent collector
// (steps (b) and (c) of a manifest PUT, the push marker of a stored blob's link). It makes
// no backend call: it answers from what the background checks found, and starts one when
// the latest is older than the re-check period. It answers false only while a check sent
// less than the trusted period ago found nothing under _gc/ (and the bucket was never
// seen collected), so until the first check answers, and whenever the checks fail for
// longer than that period, it answers true.
func (r *Registry) gcProtected() bool {
	c := r.collected
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.collected {
		return true
	}
	now := time.Now()
	if !c.checking && (c.lastCheck.IsZero() || now.Sub(c.lastCheck) >= c.recheck) {
		c.checking = true
		c.lastCheck = now
		go r.checkCollected(context.Background())
	}
	return c.absentAt.IsZero() || now.Sub(c.absentAt) >= c.fresh
}

// markCollected turns the push protection on for good (this replica runs a collector).
func (r *Registry) markCollected() {
	r.collected.mu.Lock()
	r.collected.collected = true
	r.collected.mu.Unlock()
}

// checkCollected lists _gc/ (one entry) and records the answer: anything there (the GC
// lease, which is never deleted, a run's markers, a push marker) means the bucket is or
// was garbage collected; nothing there, that it was not when the request was sent. An
// error changes nothing (the trusted period of an earlier answer runs out).
func (r *Registry) checkCollected(ctx context.Context) {
	c := r.collected
	ctx, cancel := context.WithTimeout(ctx, c.recheck)
	defer cancel()
	sent := time.Now()
	l, err := r.d.List(ctx, gcDir(), "", 1)
	if errors.Is(err, driver.ErrNotFound) { // List never should; a driver that does means empty
		err = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checking = false
	switch {
	case err != nil:
		r.opts.Logger.DebugContext(ctx, "gc: checking whether the bucket is garbage collected failed; pushes stay protected once the last answer is stale",
			"error", err)
	case len(l) > 0:
		c.collected = true
	case sent.After(c.absentAt):
		c.absentAt = sent
	}
}

// announce makes sure that every replica protects its pushes before this run deletes
// anything: when no run announced garbage collection on the bucket yet (no
// _gc/announced), it writes _gc/announcing (the lease, under _gc/ too, may have been
// written by this run's Acquire just before), waits the announce period, and writes
// _gc/announced. A replica's check sent after _gc/announcing was written finds _gc/ not
// empty; one sent before it is trusted for half the announce period only; so once the
// wait is over, no replica decides any longer to skip the protection, and the pushes
// that did skip it wrote what they guard before the wait ended (see gc_protect.go).
func (g *gcRun) announce(ctx context.Context) error {
	if done, err := g.announced(ctx); done || err != nil {
		return err
	}
	now := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	if err := g.put(ctx, gcAnnouncingPath(), now); err != nil {
		return fmt.Errorf("gc: announce: %w", err)
	}
	d := g.r.opts.GCAnnounce
	g.log.InfoContext(ctx, "gc: first run on this bucket: waiting for every replica to protect its pushes before deleting", "wait", d)
	t := time.NewTimer(d)
	select {
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	case <-t.C:
	}
	if err := g.put(ctx, gcAnnouncedPath(), now); err != nil {
		return fmt.Errorf("gc: announce: %w", err)
	}
	return nil
}

// announced reports whether a run announced garbage collection on the bucket already.
func (g *gcRun) announced(ctx context.Context) (bool, error) {
	_, err := g.c.Stat(ctx, gcAnnouncedPath())
	if errors.Is(err, driver.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("gc: stat announce marker: %w", err)
	}
	return true, nil
}

package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// RunGC runs one garbage collection (CollectGarbage) under the GC lease (GCLeasePath),
// so that of the replicas sharing the backend one collects at a time: it takes the lease
// (an error wrapping ErrLeaseHeld when another replica holds it: skip this run), renews
// it while the run lasts, fences every delete with it (a runner that stalled past its
// lease deletes nothing more: the run ends with an error wrapping ErrLeaseLost), and
// releases it at the end. opts.Fence, if set, is checked too.
func (r *Registry) RunGC(ctx context.Context, opts GCOptions, lease LeaseOptions) (*GCReport, error) {
	return r.runGC(ctx, opts, lease, gcClock{resolution: time.Second, touchMargin: time.Second})
}

func (r *Registry) runGC(ctx context.Context, opts GCOptions, lease LeaseOptions, clock gcClock) (*GCReport, error) {
	l, err := r.AcquireLease(ctx, GCLeasePath, lease)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	kctx, stop := context.WithCancel(ctx)
	kept := make(chan error, 1)
	go func() { kept <- l.Keep(kctx) }()
	fence := opts.Fence
	opts.Fence = func() error {
		if err := l.Check(); err != nil {
			return err
		}
		if fence != nil {
			return fence()
		}
		return nil
	}
	rep, err := r.collect(ctx, opts, clock)
	stop()
	// Keep ends with kctx; a lease it lost meanwhile failed the collection through the
	// fence (l.Check), so its error adds nothing here.
	<-kept //nolint:errcheck // see above
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if rerr := l.Release(rctx); rerr != nil && err == nil && !errors.Is(rerr, ErrLeaseLost) {
		r.opts.Logger.WarnContext(ctx, "gc: releasing the lease failed; it expires by itself", "error", rerr)
	}
	return rep, err
}

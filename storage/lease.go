package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/registryd/registryd/driver"
)

// A lease elects one holder among replicas that share a backend and nothing else (no
// database, no coordinator): the record at the lease's path says who holds it, until
// when, and with which fencing epoch, and every change of the record is a conditional
// write (driver.PutIf), so of two replicas acting on the same record exactly one
// succeeds.
//
//   - Acquire: no record → create it with epoch 1 (create-if-absent); an expired record →
//     replace it (if-version) with epoch+1; a live record of another holder →
//     ErrLeaseHeld. Epochs only grow: each holder's epoch is greater than every earlier
//     holder's, so work stamped with an epoch can be fenced.
//   - Renew: replace our own record (if-version = the version we wrote) with a later
//     expiry. Losing that race, or finding another holder, means the lease is lost.
//   - Check: a local fence that makes no call. It fails once the time since the lease was
//     last confirmed (the moment before the write that succeeded was sent) reaches
//     TTL − Margin. Another replica can take over only once the record's expiry (that
//     same moment + TTL, by the writer's clock) has passed, so a holder that stalls
//     (a GC pause, a frozen VM, a partition) stops before the next one starts, provided
//     the replicas' clocks differ by less than Margin.
//   - Release: write an expired record, so that the next Acquire succeeds at once.
//
// A conditional write whose answer was lost (a timeout after the backend applied it) is
// recognised by reading the record back: a record with our holder, epoch and renewal
// count is ours.

// Errors of leases, for errors.Is.
var (
	// ErrLeaseHeld: another holder has a live lease. The error is a *LeaseHeldError
	// naming the holder.
	ErrLeaseHeld = errors.New("lease held by another holder")
	// ErrLeaseLost: the lease is no longer ours (another holder took it over, it was
	// released, or it was not confirmed within TTL − Margin). Work fenced by the lease
	// must stop.
	ErrLeaseLost = errors.New("lease lost")
)

// LeaseHeldError is the error of an Acquire that found a live lease of another holder.
// It matches ErrLeaseHeld with errors.Is.
type LeaseHeldError struct {
	Path    string    // the lease's path
	Holder  string    // who holds it
	Epoch   uint64    // its epoch
	Expires time.Time // when it expires unless renewed
}

// Error implements error.
func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("lease %s held by %s (epoch %d) until %s", e.Path, e.Holder, e.Epoch, e.Expires.UTC().Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrLeaseHeld) hold.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

// LeaseOptions configures a lease. The zero value of each field is a documented default.
type LeaseOptions struct {
	// Holder identifies this holder in the record; it must differ between replicas and
	// between runs (default: "holder-" and 12 random hex digits).
	Holder string
	// TTL is how long a record stays live after it is written (default 30s).
	TTL time.Duration
	// Margin is how long before the record's expiry Check starts failing: it must cover
	// the clock difference between replicas and the time a fenced step takes from its
	// Check to its last backend call (default TTL/5). 0 < Margin < TTL.
	Margin time.Duration
	// RenewEvery is the period of Keep's renewals (default TTL/3); it must be below
	// TTL − Margin.
	RenewEvery time.Duration
	// Now is the clock (default time.Now). Tests inject a fake one.
	Now func() time.Time
}

func (o *LeaseOptions) defaults() error {
	if o.Holder == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		o.Holder = "holder-" + hex.EncodeToString(b)
	}
	if o.TTL == 0 {
		o.TTL = 30 * time.Second
	}
	if o.Margin == 0 {
		o.Margin = o.TTL / 5
	}
	if o.RenewEvery == 0 {
		o.RenewEvery = o.TTL / 3
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case o.TTL < 0:
		return fmt.Errorf("lease: negative TTL %s", o.TTL)
	case o.Margin <= 0 || o.Margin >= o.TTL:
		return fmt.Errorf("lease: margin %s must be positive and below the TTL %s", o.Margin, o.TTL)
	case o.RenewEvery <= 0 || o.RenewEvery >= o.TTL-o.Margin:
		return fmt.Errorf("lease: renewal period %s must be positive and below TTL - margin (%s)", o.RenewEvery, o.TTL-o.Margin)
	}
	return nil
}

// leaseRecord is the lease object's JSON content.
type leaseRecord struct {
	Holder string `json:"holder"`
	Epoch  uint64 `json:"epoch"`
	// Renewals counts the holder's writes in this epoch, so that every write's content
	// (and so its version, even where a version is a content hash) is new.
	Renewals uint64    `json:"renewals"`
	Expires  time.Time `json:"expires"`
}

// same reports whether r and o are the same write (time.Time is compared with Equal: a
// decoded record has no monotonic reading and may have another location).
func (r leaseRecord) same(o leaseRecord) bool {
	return r.Holder == o.Holder && r.Epoch == o.Epoch && r.Renewals == o.Renewals && r.Expires.Equal(o.Expires)
}

// maxLeaseRecord bounds the bytes read of a lease object.
const maxLeaseRecord = 4 << 10

// Lease is a lease held by this process. Its methods are safe for concurrent use (Keep in
// the background, Check from the fenced work).
type Lease struct {
	d    driver.Driver
	path string
	opts LeaseOptions

	// op serializes the writes of Renew and Release: each replaces the version the
	// previous one wrote.
	op sync.Mutex

	mu        sync.Mutex
	rec       leaseRecord // the record we last wrote
	version   string      // its version
	confirmed time.Time   // when the write of rec was sent (by opts.Now)
	lost      error       // set once the lease is lost or released
}

// AcquireLease takes the lease at path (a path outside the trees that catalog and GC walk,
// such as GCLeasePath) for opts.Holder, through r's driver. It returns ErrLeaseHeld (a
// *LeaseHeldError) when another holder's record is live, and the driver's error when the
// backend fails; an unreadable record is an error too (never overwritten: its epoch is
// unknown). See the package comment on leases for the protocol.
func (r *Registry) AcquireLease(ctx context.Context, path string, opts LeaseOptions) (*Lease, error) {
	return AcquireLease(ctx, r.d, path, opts)
}

// AcquireLease is Registry.AcquireLease on driver d.
func AcquireLease(ctx context.Context, d driver.Driver, path string, opts LeaseOptions) (*Lease, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	l := &Lease{d: d, path: path, opts: opts}
	// A few rounds: a record that expires or is released while we race for it can make
	// a round fail without anyone holding a live lease.
	var lastErr error
	for range 3 {
		cur, version, err := l.read(ctx)
		absent := errors.Is(err, driver.ErrNotFound)
		if err != nil && !absent {
			return nil, err
		}
		now := opts.Now()
		next := leaseRecord{Holder: opts.Holder, Epoch: 1, Expires: now.Add(opts.TTL)}
		if !absent {
			if now.Before(cur.Expires) {
				return nil, &LeaseHeldError{Path: path, Holder: cur.Holder, Epoch: cur.Epoch, Expires: cur.Expires}
			}
			next.Epoch = cur.Epoch + 1
		}
		err = l.write(ctx, next, version, now)
		if err == nil {
			return l, nil
		}
		if errors.Is(err, ErrLeaseLost) {
			lastErr = err
			continue // someone else wrote meanwhile: look again
		}
		return nil, err
	}
	return nil, fmt.Errorf("lease %s: acquire: contended: %w", path, lastErr)
}

// read returns the current record and its version; ErrNotFound (wrapped) when there is
// none. The version is the one of the bytes read: from the stream when the driver says
// it, else from Stats before and after the read that must agree.
func (l *Lease) read(ctx context.Context) (leaseRecord, string, error) {
	for range 3 {
		var before string
		rc, err := l.d.Reader(ctx, l.path, 0, -1)
		if err != nil {
			return leaseRecord{}, "", fmt.Errorf("lease %s: read: %w", l.path, err)
		}
		version := driver.ReaderVersion(rc)
		if version == "" {
			fi, err := l.d.Stat(ctx, l.path)
			if err != nil {
				rc.Close()
				return leaseRecord{}, "", fmt.Errorf("lease %s: stat: %w", l.path, err)
			}
			before = fi.Version
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxLeaseRecord+1))
		rc.Close()
		if err != nil {
			return leaseRecord{}, "", fmt.Errorf("lease %s: read: %w", l.path, err)
		}
		if version == "" {
			fi, err := l.d.Stat(ctx, l.path)
			if err != nil && !errors.Is(err, driver.ErrNotFound) {
				return leaseRecord{}, "", fmt.Errorf("lease %s: stat: %w", l.path, err)
			}
			if err != nil || fi.Version != before || before == "" {
				continue // changed while we read it (or no versions at all): read again
			}
			version = before
		}
		var rec leaseRecord
		if len(b) > maxLeaseRecord || json.Unmarshal(b, &rec) != nil || rec.Holder == "" || rec.Epoch == 0 {
			return leaseRecord{}, "", fmt.Errorf("lease %s: unreadable lease record (delete it to reset the lease): %q", l.path, b[:min(len(b), 200)])
		}
		return rec, version, nil
	}
	return leaseRecord{}, "", fmt.Errorf("lease %s: the record keeps changing while read, or the driver reports no versions", l.path)
}

// write stores rec with a conditional write on ifVersion ("" for none), sent at sent by
// the lease's clock, and makes it the lease's state. A failed condition is
// ErrLeaseLost, unless reading the record back shows that rec is there: then an earlier
// attempt of ours was applied and its answer lost, and write succeeds. Any other failure
// is also checked by reading back, and returned as is when the record is not ours.
func (l *Lease) write(ctx context.Context, rec leaseRecord, ifVersion string, sent time.Time) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("lease %s: %w", l.path, err)
	}
	version, err := l.d.PutIf(ctx, l.path, bytes.NewReader(b), int64(len(b)), ifVersion)
	if err != nil {
		cur, v, rerr := l.read(ctx)
		absent := errors.Is(rerr, driver.ErrNotFound)
		switch {
		case rerr == nil && cur.same(rec):
			version = v // ours: the answer of an applied write was lost
		case rerr == nil && (cur.Holder != rec.Holder || cur.Epoch != rec.Epoch):
			// Another holder's record, whatever the write's error: definitive.
			return fmt.Errorf("lease %s: %w: the record changed (now %s): %w", l.path, ErrLeaseLost, describe(cur, rerr), err)
		case errors.Is(err, driver.ErrPreconditionFailed) && (rerr == nil || absent):
			return fmt.Errorf("lease %s: %w: the record changed (now %s): %w", l.path, ErrLeaseLost, describe(cur, rerr), err)
		default:
			// The backend failed and the record is still the one we replaced (or
			// could not be read): nothing is decided.
			return fmt.Errorf("lease %s: write: %w", l.path, err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rec, l.version, l.confirmed = rec, version, sent
	return nil
}

// describe names a record read back for an error message.
func describe(rec leaseRecord, err error) string {
	if err != nil {
		return "absent"
	}
	return fmt.Sprintf("holder %s, epoch %d", rec.Holder, rec.Epoch)
}

// Path returns the lease object's path.
func (l *Lease) Path() string { return l.path }

// Holder returns this holder's identity.
func (l *Lease) Holder() string { return l.opts.Holder }

// Epoch returns the lease's fencing epoch: greater than that of every earlier holder of
// the lease. It does not change while the lease is held.
func (l *Lease) Epoch() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.Epoch
}

// Check is the fence: it returns nil while the lease is ours and confirmed recently
// enough, and an error wrapping ErrLeaseLost once it was lost, released, or last
// confirmed TTL − Margin ago or more. It makes no backend call. Fenced work calls it
// before each step that must not run without the lease (a delete).
func (l *Lease) Check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	deadline := l.confirmed.Add(l.opts.TTL - l.opts.Margin)
	if now := l.opts.Now(); !now.Before(deadline) {
		return fmt.Errorf("lease %s: %w: not confirmed since %s (deadline %s)", l.path, ErrLeaseLost,
			l.confirmed.UTC().Format(time.RFC3339Nano), deadline.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// Expires returns when Check starts failing unless the lease is renewed first.
func (l *Lease) Expires() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.confirmed.Add(l.opts.TTL - l.opts.Margin)
}

// Renew extends the lease to TTL from now. It returns an error wrapping ErrLeaseLost (and
// Check fails from then on) when the record is no longer ours; any other error (the
// backend failed) leaves the lease as it was, to be renewed again before Check's
// deadline.
func (l *Lease) Renew(ctx context.Context) error {
	l.op.Lock()
	defer l.op.Unlock()
	l.mu.Lock()
	if l.lost != nil {
		err := l.lost
		l.mu.Unlock()
		return err
	}
	rec, version := l.rec, l.version
	l.mu.Unlock()
	now := l.opts.Now()
	rec.Renewals++
	rec.Expires = now.Add(l.opts.TTL)
	err := l.write(ctx, rec, version, now)
	if errors.Is(err, ErrLeaseLost) {
		l.markLost(err)
	}
	return err
}

// markLost makes Check fail with err from now on.
func (l *Lease) markLost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = err
	}
}

// Release gives the lease up: Check fails from now on, and an expired record is written
// (conditionally, so only while the record is ours) so that the next Acquire, by any
// replica, succeeds at once. Releasing a lease that is already lost or released writes
// nothing and returns nil.
func (l *Lease) Release(ctx context.Context) error {
	l.op.Lock()
	defer l.op.Unlock()
	l.mu.Lock()
	if l.lost != nil {
		l.mu.Unlock()
		return nil
	}
	l.lost = fmt.Errorf("lease %s: %w: released", l.path, ErrLeaseLost)
	rec, version, confirmed := l.rec, l.version, l.confirmed
	l.mu.Unlock()
	rec.Renewals++
	rec.Expires = time.Time{} // expired by every clock
	err := l.write(ctx, rec, version, confirmed)
	if errors.Is(err, ErrLeaseLost) {
		return nil // someone else holds it already: nothing to release
	}
	return err
}

// Keep renews the lease every RenewEvery until ctx ends (it then returns ctx's error) or
// the lease is lost or released (it then returns an error wrapping ErrLeaseLost, and
// Check fails at once). A renewal that fails for another reason (the backend is
// unavailable) is retried at the next period; if none succeeds in time, Check fails by
// itself at its deadline. Run it in its own goroutine.
func (l *Lease) Keep(ctx context.Context) error {
	t := time.NewTicker(l.opts.RenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		err := l.Renew(ctx)
		if errors.Is(err, ErrLeaseLost) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/fault"
	"github.com/registryd/registryd/driver/filesystem"
	"github.com/registryd/registryd/driver/inmemory"
	"github.com/registryd/registryd/driver/s3"
	"github.com/registryd/registryd/internal/testenv"
)

// fakeClock is a clock tests move by hand; safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	testTTL    = 30 * time.Second
	testMargin = 6 * time.Second
)

func leaseOpts(holder string, clock *fakeClock) LeaseOptions {
	return LeaseOptions{Holder: holder, TTL: testTTL, Margin: testMargin, Now: clock.Now}
}

// TestLeaseSteps runs sequences of acquire, renew, release, check and clock moves of two
// or three holders on one in-memory backend, with a fake clock.
func TestLeaseSteps(t *testing.T) {
	type step struct {
		do        string // acquire, renew, release, check, advance
		who       string
		by        time.Duration // advance
		wantErr   error         // nil: success
		wantEpoch uint64        // acquire: the epoch won; ErrLeaseHeld: the holder's epoch
		wantBy    string        // ErrLeaseHeld: the holder named
	}
	acquire := func(who string, epoch uint64) step { return step{do: "acquire", who: who, wantEpoch: epoch} }
	held := func(who, by string, epoch uint64) step {
		return step{do: "acquire", who: who, wantErr: ErrLeaseHeld, wantBy: by, wantEpoch: epoch}
	}
	advance := func(d time.Duration) step { return step{do: "advance", by: d} }
	ok := func(do, who string) step { return step{do: do, who: who} }
	lost := func(do, who string) step { return step{do: do, who: who, wantErr: ErrLeaseLost} }

	cases := []struct {
		name  string
		steps []step
	}{
		{"first acquire creates epoch 1", []step{acquire("a", 1), ok("check", "a")}},
		{"a live lease is held", []step{acquire("a", 1), held("b", "a", 1), advance(testTTL - time.Nanosecond), held("b", "a", 1)}},
		{"an expired lease is taken over with the next epoch", []step{
			acquire("a", 1), advance(testTTL), acquire("b", 2), lost("check", "a"), lost("renew", "a"), lost("check", "a"),
			held("c", "b", 2),
		}},
		{"renewal extends the lease", []step{
			acquire("a", 1), advance(testTTL - testMargin - time.Second), ok("renew", "a"),
			advance(testTTL - testMargin - time.Second), ok("check", "a"), held("b", "a", 1), ok("renew", "a"),
			advance(testTTL - time.Second), held("b", "a", 1),
		}},
		{"a stalled holder fails Check before another can acquire", []step{
			acquire("a", 1), advance(testTTL - testMargin - time.Nanosecond), ok("check", "a"),
			advance(time.Nanosecond), lost("check", "a"), held("b", "a", 1),
			advance(testMargin - time.Nanosecond), held("b", "a", 1), lost("check", "a"),
			advance(time.Nanosecond), acquire("b", 2), lost("renew", "a"),
		}},
		{"a late renewal of an untaken lease restores it", []step{
			acquire("a", 1), advance(testTTL - testMargin), lost("check", "a"), ok("renew", "a"), ok("check", "a"),
			held("b", "a", 1),
		}},
		{"release lets the next acquire in at once", []step{
			acquire("a", 1), ok("release", "a"), lost("check", "a"), acquire("b", 2), ok("release", "a"),
			lost("renew", "a"), ok("check", "b"), held("c", "b", 2),
		}},
		{"release after a takeover leaves the new holder alone", []step{
			acquire("a", 1), advance(testTTL), acquire("b", 2), ok("release", "a"), ok("check", "b"), ok("renew", "b"),
			held("c", "b", 2),
		}},
		{"epochs keep growing across holders", []step{
			acquire("a", 1), ok("release", "a"), acquire("b", 2), advance(testTTL), acquire("c", 3), ok("release", "c"),
			acquire("a2", 4),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			clock := newFakeClock()
			r := newTestRegistry(t, inmemory.New())
			leases := map[string]*Lease{}
			for i, s := range tc.steps {
				var err error
				switch s.do {
				case "advance":
					clock.Advance(s.by)
					continue
				case "acquire":
					var l *Lease
					l, err = r.AcquireLease(ctx, GCLeasePath, leaseOpts(s.who, clock))
					if err == nil {
						leases[s.who] = l
						if l.Epoch() != s.wantEpoch {
							t.Fatalf("step %d: %s acquired epoch %d, want %d", i, s.who, l.Epoch(), s.wantEpoch)
						}
					}
					var he *LeaseHeldError
					if errors.As(err, &he) && (he.Holder != s.wantBy || he.Epoch != s.wantEpoch) {
						t.Fatalf("step %d: %s: held by %s epoch %d, want %s epoch %d", i, s.who, he.Holder, he.Epoch, s.wantBy, s.wantEpoch)
					}
				case "renew":
					err = leases[s.who].Renew(ctx)
				case "release":
					err = leases[s.who].Release(ctx)
				case "check":
					err = leases[s.who].Check()
				}
				if s.wantErr == nil && err != nil {
					t.Fatalf("step %d: %s %s: %v", i, s.do, s.who, err)
				}
				if s.wantErr != nil && !errors.Is(err, s.wantErr) {
					t.Fatalf("step %d: %s %s: want %v, got %v", i, s.do, s.who, s.wantErr, err)
				}
			}
		})
	}
}

// TestLeaseRefusals: bad options and an unreadable record are errors, never a takeover.
func TestLeaseRefusals(t *testing.T) {
	ctx := context.Background()
	d := inmemory.New()
	for _, o := range []LeaseOptions{
		{TTL: time.Second, Margin: time.Second},
		{TTL: time.Second, Margin: -time.Millisecond},
		{TTL: time.Second, Margin: 100 * time.Millisecond, RenewEvery: 900 * time.Millisecond},
		{TTL: -time.Second},
	} {
		if _, err := AcquireLease(ctx, d, GCLeasePath, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if err := d.Put(ctx, GCLeasePath, strings.NewReader("not json"), -1); err != nil {
		t.Fatal(err)
	}
	_, err := AcquireLease(ctx, d, GCLeasePath, LeaseOptions{Holder: "a"})
	if err == nil || errors.Is(err, ErrLeaseHeld) || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("acquire over a corrupt record: %v", err)
	}
	// Default options work and name a holder.
	if err := d.Delete(ctx, GCLeasePath); err != nil {
		t.Fatal(err)
	}
	l, err := AcquireLease(ctx, d, GCLeasePath, LeaseOptions{})
	if err != nil || !strings.HasPrefix(l.Holder(), "holder-") || l.Check() != nil {
		t.Fatalf("acquire with defaults: %v", err)
	}
}

// TestLeaseLostAnswer: a conditional write that the backend applies but whose answer is
// lost (the fault driver reports ErrUnavailable after the inner driver stored it) is
// recognised as ours by reading the record back, directly and behind WithRetry (whose
// retry then fails with ErrPreconditionFailed); a failure that changed nothing leaves the
// lease held and renewable.
func TestLeaseLostAnswer(t *testing.T) {
	ctx := context.Background()
	for _, retried := range []bool{false, true} {
		t.Run(fmt.Sprintf("retried=%v", retried), func(t *testing.T) {
			clock := newFakeClock()
			f := fault.New(inmemory.New())
			var d driver.Driver = f
			if retried {
				d = driver.WithRetry(f, driver.RetryPolicy{MaxAttempts: 3})
			}
			lostOnce := func() {
				f.Add(fault.Rule{Methods: []string{fault.PutIf}, Lost: true, Err: driver.ErrUnavailable, Times: 1})
			}
			lostOnce()
			a, err := AcquireLease(ctx, d, GCLeasePath, leaseOpts("a", clock))
			if err != nil {
				t.Fatalf("acquire with a lost answer: %v", err)
			}
			if a.Epoch() != 1 || a.Check() != nil {
				t.Fatalf("acquired epoch %d, check %v", a.Epoch(), a.Check())
			}
			if _, err := AcquireLease(ctx, d, GCLeasePath, leaseOpts("b", clock)); !errors.Is(err, ErrLeaseHeld) {
				t.Fatalf("b: %v", err)
			}
			clock.Advance(testTTL - testMargin - time.Second)
			lostOnce()
			if err := a.Renew(ctx); err != nil {
				t.Fatalf("renew with a lost answer: %v", err)
			}
			clock.Advance(testTTL - testMargin - time.Second)
			if err := a.Check(); err != nil {
				t.Fatalf("check after the recognised renewal: %v", err)
			}
			// A failure before the backend changes nothing: not lost, still renewable.
			f.Add(fault.Rule{Methods: []string{fault.PutIf}, Err: driver.ErrUnavailable, Times: 3})
			if err := a.Renew(ctx); !errors.Is(err, driver.ErrUnavailable) || errors.Is(err, ErrLeaseLost) {
				t.Fatalf("renew while the backend fails: %v", err)
			}
			f.Clear()
			if err := a.Renew(ctx); err != nil {
				t.Fatalf("renew after the outage: %v", err)
			}
			lostOnce()
			if err := a.Release(ctx); err != nil {
				t.Fatalf("release with a lost answer: %v", err)
			}
			b, err := AcquireLease(ctx, d, GCLeasePath, leaseOpts("b", clock))
			if err != nil || b.Epoch() != 2 {
				t.Fatalf("acquire after release: %v", err)
			}
		})
	}
}

// TestLeaseKeep: Keep renews in the background so that the lease outlives its TTL, and
// once another holder's record replaces ours, Keep returns ErrLeaseLost and Check fails
// at once, long before the TTL would have run out. Real time, short TTL.
func TestLeaseKeep(t *testing.T) {
	ctx := context.Background()
	d := inmemory.New()
	opts := LeaseOptions{Holder: "a", TTL: time.Second, Margin: 200 * time.Millisecond, RenewEvery: 100 * time.Millisecond}
	a, err := AcquireLease(ctx, d, GCLeasePath, opts)
	if err != nil {
		t.Fatal(err)
	}
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kept := make(chan error, 1)
	go func() { kept <- a.Keep(kctx) }()
	deadline := time.Now().Add(3 * opts.TTL / 2) // longer than the TTL
	for time.Now().Before(deadline) {
		if err := a.Check(); err != nil {
			t.Fatalf("check while kept: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := AcquireLease(ctx, d, GCLeasePath, LeaseOptions{Holder: "b", TTL: opts.TTL}); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("b acquired a kept lease: %v", err)
	}
	// An intruder replaces the record (an operator, a replica with a broken clock).
	rec := fmt.Sprintf(`{"holder":"intruder","epoch":%d,"renewals":0,"expires":%q}`, a.Epoch()+1, time.Now().Add(time.Hour).Format(time.RFC3339Nano))
	if err := d.Put(ctx, GCLeasePath, strings.NewReader(rec), -1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case err := <-kept:
		if !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("Keep returned %v, want ErrLeaseLost", err)
		}
	case <-time.After(opts.TTL):
		t.Fatal("Keep did not notice the loss")
	}
	if err := a.Check(); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("check after the loss: %v", err)
	}
	if waited := time.Since(start); waited > 4*opts.RenewEvery {
		t.Errorf("loss noticed after %s", waited)
	}
	// Keep stops with its context.
	c, err := AcquireLease(ctx, inmemory.New(), GCLeasePath, opts)
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	go func() { time.Sleep(150 * time.Millisecond); ccancel() }()
	if err := c.Keep(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Keep after cancel: %v", err)
	}
}

// raceReplicas makes every driver (one per replica, each behind its own Registry) try to
// acquire the lease at once, for several rounds, the lease expiring by the shared fake
// clock between rounds: in each round exactly one replica wins, with the next epoch, and
// the others see ErrLeaseHeld naming the winner.
func raceReplicas(t *testing.T, drivers []driver.Driver) {
	t.Helper()
	ctx := context.Background()
	clock := newFakeClock()
	regs := make([]*Registry, len(drivers))
	for i, d := range drivers {
		regs[i] = newTestRegistry(t, d)
	}
	for round := 1; round <= 4; round++ {
		leases := make([]*Lease, len(regs))
		errs := make([]error, len(regs))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, r := range regs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				leases[i], errs[i] = r.AcquireLease(ctx, GCLeasePath, leaseOpts(fmt.Sprintf("replica-%d-round-%d", i, round), clock))
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: replicas %d and %d both acquired (epochs %d, %d)", round, winner, i, leases[winner].Epoch(), leases[i].Epoch())
			case err == nil:
				winner = i
			case !errors.Is(err, ErrLeaseHeld):
				t.Fatalf("round %d: replica %d: %v", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody acquired", round)
		}
		if e := leases[winner].Epoch(); e != uint64(round) {
			t.Fatalf("round %d: epoch %d", round, e)
		}
		for i, err := range errs {
			var he *LeaseHeldError
			if i != winner && (!errors.As(err, &he) || he.Holder != leases[winner].Holder() || he.Epoch != uint64(round)) {
				t.Fatalf("round %d: replica %d: %v, want held by the winner", round, i, err)
			}
		}
		if round%2 == 0 {
			if err := leases[winner].Release(ctx); err != nil {
				t.Fatal(err)
			}
		} else {
			clock.Advance(testTTL)
		}
	}
}

// TestLeaseReplicasFilesystem: five replicas, each with its own filesystem driver on one
// directory, race for the lease.
func TestLeaseReplicasFilesystem(t *testing.T) {
	dir := t.TempDir()
	var drivers []driver.Driver
	for range 5 {
		d, err := filesystem.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		drivers = append(drivers, d)
	}
	raceReplicas(t, drivers)
}

// TestLeaseReplicasMinIO: four replicas, each with its own S3 client and driver on one
// MinIO bucket, race for the lease (If-None-Match and If-Match in MinIO).
func TestLeaseReplicasMinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	t.Setenv("AWS_CA_BUNDLE", "")
	m := testenv.StartMinIO(t)
	bucket := m.NewBucket(t)
	var drivers []driver.Driver
	for range 4 {
		c := awss3.New(awss3.Options{Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, "")})
		d, err := s3.New(c, bucket, s3.Options{})
		if err != nil {
			t.Fatal(err)
		}
		drivers = append(drivers, driver.WithRetry(d, driver.DefaultRetryPolicy()))
	}
	raceReplicas(t, drivers)
}

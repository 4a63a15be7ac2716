package storage

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/fault"
	regerr "github.com/registryd/registryd/errors"
)

// holdAt makes the first call of method on a path with the given suffix wait until
// release is called; reached is closed when that call starts waiting. Calls from the
// test's own goroutine are never held (skip returns true for them while set).
type hold struct {
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (f *fixture) holdAt(method, suffix string) *hold {
	h := &hold{reached: make(chan struct{}), release: make(chan struct{})}
	f.hooks.set(func(m, p string) {
		if m != method || !strings.HasSuffix(p, suffix) {
			return
		}
		fired := false
		h.once.Do(func() { fired = true })
		if fired {
			close(h.reached)
			<-h.release
		}
	})
	return h
}

// runAsync starts a run and returns a channel with its outcome.
func (f *fixture) runAsync(opts GCOptions) <-chan error {
	done := make(chan error, 1)
	time.Sleep(5 * time.Millisecond)
	go func() {
		_, err := f.r.collect(context.Background(), opts, gcClock{})
		done <- err
	}()
	return done
}

func wait(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func waitErr(t *testing.T, c <-chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for the run")
		return nil
	}
}

// TestGCRaceBlobUploadedDuringMark: a blob uploaded while mark runs, and referenced by a
// manifest pushed after mark (while the sweep is about to start), survives.
func TestGCRaceBlobUploadedDuringMark(t *testing.T) {
	f := newFixture(t)
	f.image("a", "v1", nil, "cfg", "l")
	orphan := f.blob("a", "orphan")
	_ = f.r.DeleteBlob(context.Background(), "a", orphan)
	h := f.holdAt("List", blobsDir()) // mark's blob walk
	done := f.runAsync(testGCOptions())
	wait(t, h.reached, "mark")
	f.hooks.set(nil)
	cfg, layer := f.blob("a", "new cfg"), f.blob("a", "new layer")
	h2 := f.holdAt("Put", gcSweepingPath())
	close(h.release)
	wait(t, h2.reached, "sweep")
	f.hooks.set(nil)
	m := f.image("a", "v2", nil, "new cfg", "new layer")
	close(h2.release)
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{cfg, layer, m} {
		if !f.hasBlob(d) {
			t.Errorf("%s swept", d)
		}
	}
	if f.hasBlob(orphan) {
		t.Error("orphan kept")
	}
	f.checkIntegrity()
}

// TestGCRaceMountOrphanDuringSweep: an old orphan blob a client mounts and references
// while the blob sweep runs. Mounted before the sweep re-reads its push marker, the blob
// is kept and the push succeeds; mounted between that check and the delete, the
// manifest push waits for the batch and then fails cleanly (400 MANIFEST_BLOB_UNKNOWN,
// no tag, no manifest left behind).
func TestGCRaceMountOrphanDuringSweep(t *testing.T) {
	ctx := context.Background()
	t.Run("mounted before the check", func(t *testing.T) {
		f := newFixture(t)
		o := f.blob("a", "orphan")
		f.image("b", "base", nil, "cfg", "base layer")
		cfg := digest.FromString("cfg")
		_ = f.r.DeleteBlob(ctx, "a", o)
		h := f.holdAt("Put", gcSweepingPath())
		done := f.runAsync(testGCOptions())
		wait(t, h.reached, "sweep")
		f.hooks.set(nil)
		if ok, err := f.r.MountBlob(ctx, "b", "", o); !ok || err != nil {
			t.Fatalf("mount: %v %v", ok, err)
		}
		close(h.release)
		if err := waitErr(t, done); err != nil {
			t.Fatal(err)
		}
		if !f.hasBlob(o) || !f.hasBlob(cfg) {
			t.Fatal("mounted orphan swept")
		}
		f.image("b", "v1", nil, "cfg", "orphan")
		f.checkIntegrity()
	})
	t.Run("mounted between the check and the delete", func(t *testing.T) {
		f := newFixture(t)
		o := f.blob("a", "orphan")
		f.image("b", "base", nil, "cfg", "base layer")
		_ = f.r.DeleteBlob(ctx, "a", o)
		h := f.holdAt("Delete", blobDataPath(o))
		done := f.runAsync(testGCOptions())
		wait(t, h.reached, "the blob's delete")
		f.hooks.set(nil)
		if ok, err := f.r.MountBlob(ctx, "b", "", o); !ok || err != nil {
			t.Fatalf("mount: %v %v", ok, err)
		}
		waiting := make(chan struct{})
		var once sync.Once
		f.hooks.set(func(m, p string) {
			if m == "Stat" && p == gcSweepingPath() {
				once.Do(func() { close(waiting) })
			}
		})
		pushed := make(chan error, 1)
		go func() {
			body := []byte(`{"schemaVersion":2,"mediaType":"` + MediaTypeOCIManifest + `","config":{"mediaType":"a","digest":"` +
				digest.FromString("cfg").String() + `","size":3},"layers":[{"mediaType":"b","digest":"` + o.String() + `","size":6}]}`)
			_, err := f.r.PutManifest(ctx, "b", "v1", body, "", nil)
			pushed <- err
		}()
		wait(t, waiting, "the push to wait for the sweep")
		close(h.release)
		if err := waitErr(t, done); err != nil {
			t.Fatal(err)
		}
		err := waitErr(t, pushed)
		if !regerr.Of(err, regerr.ManifestBlobUnknown) {
			t.Fatalf("push: %v, want MANIFEST_BLOB_UNKNOWN", err)
		}
		if f.exists(tagCurrentPath("b", "v1")) {
			t.Fatal("tag written")
		}
		f.checkIntegrity()
	})
}

// TestGCRaceHeadOrphanLink: an old layer link no manifest references, HEADed by a pusher
// (TouchOnHead) while mark runs, then referenced: the link and blob stay.
func TestGCRaceHeadOrphanLink(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.r.opts.TouchOnHead = true
	f.blob("a", "cfg")
	l := f.blob("a", "old layer")
	h := f.holdAt("List", blobsDir())
	done := f.runAsync(testGCOptions())
	wait(t, h.reached, "mark")
	f.hooks.set(nil)
	for _, d := range []digest.Digest{digest.FromString("cfg"), l} {
		if _, err := f.r.StatBlob(ctx, "a", d); err != nil {
			t.Fatal(err)
		}
	}
	close(h.release)
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	if !f.hasLink("a", l) || !f.hasBlob(l) {
		t.Fatal("HEADed link swept")
	}
	f.image("a", "v1", nil, "cfg", "old layer")
	f.checkIntegrity()
}

// TestGCRaceTagMoves: a tag moved onto an untagged manifest while mark runs, or between
// the sweep's decision and its delete, keeps the manifest and what it references.
func TestGCRaceTagMoves(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, method, at string
	}{
		{"during mark", "List", blobsDir()},
		{"after the decision, before the re-check", "Put", gcSweepingPath()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.image("a", "v1", nil, "c1", "l1")
			m2 := f.image("a", "", nil, "c2", "l2")
			h := f.holdAt(tc.method, tc.at)
			done := f.runAsync(testGCOptions())
			wait(t, h.reached, tc.name)
			f.hooks.set(nil)
			if _, err := f.r.PutManifest(ctx, "a", "v1", f.bodies[m2], "", nil); err != nil {
				t.Fatal(err)
			}
			close(h.release)
			if err := waitErr(t, done); err != nil {
				t.Fatal(err)
			}
			if !f.hasManifest("a", m2) || !f.hasLink("a", digest.FromString("l2")) || !f.hasBlob(digest.FromString("l2")) {
				t.Fatal("re-tagged manifest swept")
			}
			f.checkIntegrity()
		})
	}
	// Re-tagged while the batch deletes it: the push waits for the batch, finds what the
	// batch removed, and fails cleanly or writes the manifest again; never a tag on a
	// manifest with missing blobs.
	t.Run("while the batch deletes it", func(t *testing.T) {
		f := newFixture(t)
		m1 := f.image("a", "v1", nil, "c1", "l1")
		m2 := f.image("a", "", nil, "c2", "l2")
		h := f.holdAt("Delete", revisionLinkPath("a", m2))
		done := f.runAsync(testGCOptions())
		wait(t, h.reached, "the manifest's delete")
		waiting := make(chan struct{})
		var once sync.Once
		f.hooks.set(func(m, p string) {
			if m == "Stat" && p == gcSweepingPath() {
				once.Do(func() { close(waiting) })
			}
		})
		pushed := make(chan error, 1)
		go func() {
			_, err := f.r.PutManifest(ctx, "a", "v1", f.bodies[m2], "", nil)
			pushed <- err
		}()
		wait(t, waiting, "the push to wait for the sweep")
		close(h.release)
		if err := waitErr(t, done); err != nil {
			t.Fatal(err)
		}
		err := waitErr(t, pushed)
		d, rerr := f.r.ResolveTag(ctx, "a", "v1")
		switch {
		case err == nil && d != m2, rerr != nil:
			t.Fatalf("push succeeded but v1 is %s (%v)", d, rerr)
		case err != nil && !regerr.Of(err, regerr.ManifestBlobUnknown):
			t.Fatalf("push: %v", err)
		case err != nil && d != m1:
			t.Fatalf("failed push moved the tag to %s", d)
		}
		f.checkIntegrity()
	})
}

// TestGCRunKilledAndRunAgain: a run stopped half-way through its sweep (its context
// cancelled at a delete) leaves a consistent registry and no _gc/sweeping; the next run
// finishes the job.
func TestGCRunKilledAndRunAgain(t *testing.T) {
	f := newFixture(t)
	f.image("a", "v1", nil, "c1", "shared", "l1")
	for i := range 5 {
		f.image("a", "", nil, "c-"+string(rune('a'+i)), "shared", "l-"+string(rune('a'+i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	var mu sync.Mutex
	f.hooks.set(func(m, p string) {
		mu.Lock()
		defer mu.Unlock()
		if m == "Delete" && strings.Contains(p, "/_manifests/revisions/") {
			if n++; n == 3 {
				cancel()
			}
		}
	})
	time.Sleep(5 * time.Millisecond)
	_, err := f.r.collect(ctx, testGCOptions(), gcClock{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want cancelled", err)
	}
	f.hooks.set(nil)
	if f.exists(gcSweepingPath()) {
		t.Fatal("_gc/sweeping left behind")
	}
	f.checkIntegrity()
	rep := f.gc(testGCOptions())
	if rep.Deleted[GCKindManifest] == 0 {
		t.Fatalf("second run deleted %v", rep.Deleted)
	}
	if rep := f.gc(testGCOptions()); len(rep.Plan.Items) != 0 {
		t.Fatalf("third run still plans %v", planPaths(rep.Plan))
	}
	f.checkIntegrity()
}

// TestGCFailsClosed: a List or Stat failure during mark ends the run before any delete;
// throttling only slows it down.
func TestGCFailsClosed(t *testing.T) {
	for _, tc := range []struct{ method, at string }{
		{fault.List, "repositories/a/"}, {fault.Stat, "repositories/a/"}, {fault.Reader, "/blobs/"}, {fault.List, "/blobs/sha256/"},
	} {
		t.Run(tc.method+" "+tc.at, func(t *testing.T) {
			f := newFixture(t)
			f.image("a", "", nil, "c", "l")
			fd := fault.New(f.hooks)
			f.r.d = fd
			fd.Add(fault.Rule{Methods: []string{tc.method}, Err: driver.ErrUnavailable, Contains: tc.at})
			before := snapshot(t, f.mem)
			if _, err := f.gcErr(testGCOptions()); !errors.Is(err, driver.ErrUnavailable) {
				t.Fatalf("run: %v", err)
			}
			after := snapshot(t, f.mem)
			for _, p := range []string{gcStartedPath(), gcAnnouncingPath(), gcAnnouncedPath()} {
				delete(after, p)
				delete(before, p)
			}
			if len(after) != len(before) {
				t.Fatalf("%d objects before, %d after", len(before), len(after))
			}
		})
	}
	t.Run("throttled", func(t *testing.T) {
		f := newFixture(t)
		m := f.image("a", "", nil, "c", "l")
		fd := fault.New(f.hooks)
		f.r.d = fd
		fd.Add(fault.Rule{Err: driver.ErrThrottled, Times: 2})
		if _, err := f.gcErr(testGCOptions()); err != nil {
			t.Fatal(err)
		}
		if f.hasManifest("a", m) {
			t.Fatal("not swept")
		}
	})
}

// TestGCLease: of two replicas starting a run at once, one runs and the other skips with
// ErrLeaseHeld; a runner that stalls past its lease deletes nothing more.
func TestGCLease(t *testing.T) {
	ctx := context.Background()
	t.Run("two replicas", func(t *testing.T) {
		f := newFixture(t)
		m := f.image("a", "", nil, "c", "l")
		r2 := newTestRegistry(t, f.hooks)
		h := f.holdAt("Put", gcStartedPath())
		done := make(chan error, 1)
		time.Sleep(5 * time.Millisecond)
		go func() {
			_, err := f.r.runGC(ctx, testGCOptions(), LeaseOptions{Holder: "one"}, gcClock{})
			done <- err
		}()
		wait(t, h.reached, "the first run")
		f.hooks.set(nil)
		_, err := r2.runGC(ctx, testGCOptions(), LeaseOptions{Holder: "two"}, gcClock{})
		var held *LeaseHeldError
		if !errors.As(err, &held) || held.Holder != "one" {
			t.Fatalf("second replica: %v, want ErrLeaseHeld by one", err)
		}
		close(h.release)
		if err := waitErr(t, done); err != nil {
			t.Fatal(err)
		}
		if f.hasManifest("a", m) {
			t.Fatal("not swept")
		}
		// Released: the other replica runs next, at once.
		if _, err := r2.runGC(ctx, testGCOptions(), LeaseOptions{Holder: "two"}, gcClock{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("stalled past the lease", func(t *testing.T) {
		f := newFixture(t)
		f.image("a", "", nil, "c", "l")
		var mu sync.Mutex
		now := time.Now()
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		h := f.holdAt("Put", gcSweepingPath())
		before := snapshot(t, f.mem)
		done := make(chan error, 1)
		time.Sleep(5 * time.Millisecond)
		go func() {
			_, err := f.r.runGC(ctx, testGCOptions(), LeaseOptions{TTL: 30 * time.Second, Now: clock}, gcClock{})
			done <- err
		}()
		wait(t, h.reached, "the sweep")
		mu.Lock()
		now = now.Add(time.Minute) // the runner stalls past its lease
		mu.Unlock()
		f.hooks.set(nil)
		close(h.release)
		if err := waitErr(t, done); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("run: %v, want ErrLeaseLost", err)
		}
		after := snapshot(t, f.mem)
		for p := range before {
			if _, ok := after[p]; !ok {
				t.Errorf("%s deleted by a runner without its lease", p)
			}
		}
	})
}

// TestLinkBlobCollectedMeanwhile: a stored blob that a collector deletes between a
// mount's lookup and its push marker is not reported mounted; an upload of content the
// registry already had does not report success either (the client uploads again).
func TestLinkBlobCollectedMeanwhile(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	o := f.blob("a", "orphan")
	f.hooks.set(func(m, p string) {
		if m == "Put" && p == gcTouchedPath(o) {
			_ = f.mem.Delete(ctx, blobDataPath(o)) // the collector's delete, just before the marker
		}
	})
	if ok, err := f.r.MountBlob(ctx, "b", "a", o); ok || !errors.Is(err, errCollected) {
		t.Fatalf("mount: %v %v, want errCollected", ok, err)
	}
	f.hooks.set(nil)
	f.blob("a", "orphan") // written again: fresh, no marker needed
	f.hooks.set(func(m, p string) {
		if m == "Put" && p == gcTouchedPath(o) {
			_ = f.mem.Delete(ctx, blobDataPath(o))
		}
	})
	if _, err := f.r.PutBlob(ctx, "c", strings.NewReader("orphan"), o); !errors.Is(err, errCollected) {
		t.Fatalf("upload of a stored blob: %v, want errCollected", err)
	}
}

package storage

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/fault"
	"github.com/registryd/registryd/driver/inmemory"
)

// settleCollected runs r's check of whether its bucket is collected now, in the test's
// goroutine, as if gcProtected had started it.
func settleCollected(r *Registry) {
	r.collected.mu.Lock()
	r.collected.checking = true
	r.collected.lastCheck = time.Now()
	r.collected.mu.Unlock()
	r.checkCollected(context.Background())
}

// callCounts returns fd's calls per method (methods not called are left out).
func callCounts(fd *fault.Driver) map[string]int {
	out := map[string]int{}
	for _, m := range fault.Methods() {
		if n := fd.Calls(m); n > 0 {
			out[m] = n
		}
	}
	return out
}

// imageBody returns the body of an image manifest whose config and layer are blobs with
// the given contents.
func imageBody(t *testing.T, config, layer string) []byte {
	t.Helper()
	desc := func(c string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromString(c), Size: int64(len(c))}
	}
	b, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIManifest,
		"config": desc(config), "layers": []ocispec.Descriptor{desc(layer)}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGCProtectionCostOnlyWhereCollected: on a bucket never garbage collected, a
// manifest PUT and a mount of a stored blob make exactly the backend calls they made
// before online garbage collection (counted at commit 9dbbbcd^: PUT 2 Stats + 4 Puts,
// mount 2 Stats + 1 Put); once the bucket is collected, they pay the protection of
// gc_protect.go (PUT: the sweep marker, its own revision link, and every reference's
// link and data again; mount: the push marker and a Stat of the data).
func TestGCProtectionCostOnlyWhereCollected(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		collected bool
		put       map[string]int
		mount     map[string]int
	}{
		{"never collected", false, map[string]int{fault.Stat: 2, fault.Put: 4}, map[string]int{fault.Stat: 2, fault.Put: 1}},
		{"collected", true, map[string]int{fault.Stat: 2 + 1 + 1 + 4, fault.Put: 4}, map[string]int{fault.Stat: 2 + 1, fault.Put: 1 + 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := fault.New(inmemory.New())
			// An announce period of an hour: the one check below is trusted, and no
			// other starts, for the whole test.
			r, err := New(fd, Options{Secret: []byte("0123456789abcdef0123"), GCAnnounce: time.Hour, Collected: tc.collected})
			if err != nil {
				t.Fatal(err)
			}
			settleCollected(r)
			if got := r.gcProtected(); got != tc.collected {
				t.Fatalf("gcProtected = %v, want %v", got, tc.collected)
			}
			for _, c := range []string{"config", "layer"} {
				if _, err := r.PutBlob(ctx, "a", strings.NewReader(c), digest.FromString(c)); err != nil {
					t.Fatal(err)
				}
			}
			fd.ResetCounts()
			if _, err := r.PutManifest(ctx, "a", "v1", imageBody(t, "config", "layer"), "", nil); err != nil {
				t.Fatal(err)
			}
			if got := callCounts(fd); !maps.Equal(got, tc.put) {
				t.Errorf("manifest PUT: %v, want %v", got, tc.put)
			}
			fd.ResetCounts()
			if ok, err := r.MountBlob(ctx, "b", "a", digest.FromString("layer")); !ok || err != nil {
				t.Fatalf("mount: %v %v", ok, err)
			}
			if got := callCounts(fd); !maps.Equal(got, tc.mount) {
				t.Errorf("mount: %v, want %v", got, tc.mount)
			}
		})
	}
}

// TestGCProtectedOnceAnnounced: a replica that found its bucket never collected turns
// the protection on for good once anything is under _gc/ (here the GC lease another
// replica takes): never later than GCAnnounce/2 after the lease was written, whatever the
// background checks do; it protects its pushes from the start until its first check
// answers; a check that fails leaves it protected once the last answer is stale.
func TestGCProtectedOnceAnnounced(t *testing.T) {
	ctx := context.Background()
	const announce = 400 * time.Millisecond
	newReplica := func(d driver.Driver) *Registry {
		r, err := New(d, Options{Secret: []byte("0123456789abcdef0123"), GCAnnounce: announce})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	t.Run("lease taken", func(t *testing.T) {
		mem := inmemory.New()
		r := newReplica(mem)
		if !r.gcProtected() { // starts the first check
			t.Fatal("unprotected before the first check answered")
		}
		for {
			r.collected.mu.Lock()
			checking := r.collected.checking
			r.collected.mu.Unlock()
			if !checking {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if r.gcProtected() {
			t.Fatal("protected on a bucket never collected")
		}
		other := newReplica(mem)
		l, err := other.AcquireLease(ctx, GCLeasePath, LeaseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		written := time.Now()
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		for {
			p := r.gcProtected()
			since := time.Since(written)
			if !p && since >= announce/2 {
				t.Fatalf("unprotected %s after the lease was written", since)
			}
			r.collected.mu.Lock()
			sticky := r.collected.collected
			r.collected.mu.Unlock()
			if sticky {
				if !p {
					t.Fatal("collected but unprotected")
				}
				break
			}
			if since > 10*announce {
				t.Fatalf("the lease not noticed after %s", since)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("noticed within %s", time.Since(written))
	})
	t.Run("checks failing", func(t *testing.T) {
		fd := fault.New(inmemory.New())
		r := newReplica(fd)
		settleCollected(r)
		fd.Fail(driver.ErrUnavailable, fault.List)
		failing := time.Now()
		for time.Since(failing) < announce {
			if !r.gcProtected() && time.Since(failing) >= announce/2 {
				t.Fatal("unprotected past the last answer's trusted period")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if !r.gcProtected() {
			t.Fatal("unprotected with every check failing")
		}
	})
}

// TestGCFirstRunWaitsAnnounce: the first run on a bucket writes _gc/announcing, deletes
// nothing (and does not even begin) until GCAnnounce has passed, and writes
// _gc/announced; the next run does not wait; a dry run neither waits nor announces.
func TestGCFirstRunWaitsAnnounce(t *testing.T) {
	const announce = 300 * time.Millisecond
	f := newFixture(t)
	r, err := New(f.hooks, Options{Secret: []byte("0123456789abcdef0123"), GCAnnounce: announce})
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	f.image("a", "", nil, "c1", "l1") // untagged: swept
	var mu sync.Mutex
	var announcing, started, firstDelete time.Time
	f.hooks.set(func(m, p string) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		switch {
		case m == "Put" && p == gcAnnouncingPath():
			announcing = now
		case m == "Put" && p == gcStartedPath() && started.IsZero():
			started = now
		case m == "Delete" && firstDelete.IsZero():
			firstDelete = now
		}
	})
	dry := testGCOptions()
	dry.DryRun = true
	if _, err := f.gcErr(dry); err != nil {
		t.Fatal(err)
	}
	if !announcing.IsZero() || f.exists(gcAnnouncedPath()) {
		t.Fatal("a dry run announced")
	}
	rep := f.gc(testGCOptions())
	mu.Lock()
	if announcing.IsZero() || started.IsZero() || firstDelete.IsZero() || rep.Deleted[GCKindManifest] == 0 {
		t.Fatalf("announcing %v, started %v, first delete %v, deleted %v", announcing, started, firstDelete, rep.Deleted)
	}
	if w := started.Sub(announcing); w < announce {
		t.Fatalf("the run began %s after announcing, want at least %s", w, announce)
	}
	if !firstDelete.After(started) {
		t.Fatal("deleted before the run began")
	}
	announcing, started, firstDelete = time.Time{}, time.Time{}, time.Time{}
	mu.Unlock()
	if !f.exists(gcAnnouncedPath()) {
		t.Fatal("no announce marker")
	}
	f.image("a", "", nil, "c2", "l2")
	begun := time.Now()
	f.gc(testGCOptions())
	mu.Lock()
	defer mu.Unlock()
	if !announcing.IsZero() || started.Sub(begun) >= announce {
		t.Fatalf("the second run announced again or waited (began after %s)", started.Sub(begun))
	}
}

// TestGCUnprotectedPushBeforeFirstRun: a replica that still trusts "never collected"
// (its last check answered just before the announcement was written) mounts an orphan
// blob and pushes a manifest referencing it, without any protection, while the first run
// on the bucket is announcing itself; the run keeps both.
func TestGCUnprotectedPushBeforeFirstRun(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	o := f.blob("a", "orphan")
	f.image("b", "base", nil, "cfg", "base layer")
	_ = f.r.DeleteBlob(ctx, "a", o)
	// Long enough for the pusher to trust its answer while it pushes.
	const announce = 2 * time.Second
	pusher, err := New(f.hooks, Options{Secret: []byte("0123456789abcdef0123"), GCAnnounce: announce})
	if err != nil {
		t.Fatal(err)
	}
	h := f.holdAt("Put", gcAnnouncingPath())
	runner, err := New(f.hooks, Options{Secret: []byte("0123456789abcdef0123"), GCAnnounce: announce})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	time.Sleep(5 * time.Millisecond)
	go func() {
		// Without the lease (CollectGarbage's path): _gc/ is still empty when the run
		// is about to write _gc/announcing.
		_, err := runner.collect(ctx, testGCOptions(), gcClock{})
		done <- err
	}()
	wait(t, h.reached, "the announcement")
	f.hooks.set(nil)
	// The pusher's last check answered just before the announcement was written.
	settleCollected(pusher)
	if pusher.gcProtected() {
		t.Fatal("the pusher protected on a bucket never collected: the test proves nothing")
	}
	if ok, err := pusher.MountBlob(ctx, "b", "", o); !ok || err != nil {
		t.Fatalf("mount: %v %v", ok, err)
	}
	body := imageBody(t, "cfg", "orphan")
	if _, err := pusher.PutManifest(ctx, "b", "v1", body, "", nil); err != nil {
		t.Fatal(err)
	}
	if f.exists(gcTouchedPath(o)) {
		t.Fatal("the unprotected mount wrote a push marker")
	}
	close(h.release)
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	if !f.hasBlob(o) || !f.hasLink("b", o) || !f.hasManifest("b", digest.FromBytes(body)) {
		t.Fatal("the unprotected push was swept")
	}
	f.checkIntegrity()
}

// TestGCUnprotectedReplicaProtectedByMark: a replica whose last check answered just
// before the first run announced itself protects its pushes by the time the run marks
// (the run waited the announce period; the answer is stale): a mount of an orphan blob
// and a manifest referencing it, both during mark, survive the sweep.
func TestGCUnprotectedReplicaProtectedByMark(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	o := f.blob("a", "orphan")
	f.image("b", "base", nil, "cfg", "base layer")
	_ = f.r.DeleteBlob(ctx, "a", o)
	const announce = 400 * time.Millisecond
	pusher, err := New(f.hooks, Options{Secret: []byte("0123456789abcdef0123"), GCAnnounce: announce})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := New(f.hooks, Options{Secret: []byte("0123456789abcdef0123"), GCAnnounce: announce})
	if err != nil {
		t.Fatal(err)
	}
	h1 := f.holdAt("Put", gcAnnouncingPath())
	done := make(chan error, 1)
	time.Sleep(5 * time.Millisecond)
	go func() {
		_, err := runner.collect(ctx, testGCOptions(), gcClock{})
		done <- err
	}()
	wait(t, h1.reached, "the announcement")
	settleCollected(pusher)
	if pusher.gcProtected() {
		t.Fatal("the pusher protected on a bucket never collected: the test proves nothing")
	}
	h2 := f.holdAt("List", blobsDir()) // mark's blob walk
	close(h1.release)
	wait(t, h2.reached, "mark")
	f.hooks.set(nil)
	if !pusher.gcProtected() {
		t.Fatal("the pusher still trusts its answer while the run marks")
	}
	if ok, err := pusher.MountBlob(ctx, "b", "", o); !ok || err != nil {
		t.Fatalf("mount: %v %v", ok, err)
	}
	body := imageBody(t, "cfg", "orphan")
	if _, err := pusher.PutManifest(ctx, "b", "v1", body, "", nil); err != nil {
		t.Fatal(err)
	}
	close(h2.release)
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	if !f.hasBlob(o) || !f.hasLink("b", o) || !f.hasManifest("b", digest.FromBytes(body)) {
		t.Fatal("the push during mark was swept")
	}
	f.checkIntegrity()
}

package testsuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/registryd/registryd/driver"
)

// putIf calls d.PutIf with b and fails the test on an error.
func putIf(t *testing.T, d driver.Driver, p string, b []byte, ifVersion string) string {
	t.Helper()
	v, err := d.PutIf(ctx(t), p, bytes.NewReader(b), int64(len(b)), ifVersion)
	if err != nil {
		t.Fatalf("PutIf(%s, ifVersion %q): %v", p, ifVersion, err)
	}
	return v
}

// stat returns p's Info and fails the test on an error.
func stat(t *testing.T, d driver.Driver, p string) driver.Info {
	t.Helper()
	fi, err := d.Stat(ctx(t), p)
	if err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	return fi
}

// wantUnchanged fails unless p holds content b at version v.
func wantUnchanged(t *testing.T, d driver.Driver, p string, b []byte, v string) {
	t.Helper()
	if got := read(t, d, p, 0, -1); !bytes.Equal(got, b) {
		t.Errorf("%s holds %q, want it unchanged: %q", p, got, b)
	}
	if fi := stat(t, d, p); fi.Version != v {
		t.Errorf("%s is at version %q, want it unchanged: %q", p, fi.Version, v)
	}
}

// testPutIfAbsent: create-if-absent stores once, reports Stat's version, and fails the
// second time with ErrPreconditionFailed leaving the content alone; it also refuses to
// replace an object stored by a plain Put.
func testPutIfAbsent(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	p := dir + "/lease"
	v := putIf(t, d, p, []byte("first"), "")
	if v == "" {
		t.Fatal("PutIf returned no version")
	}
	if fi := stat(t, d, p); fi.Version != v || fi.Size != 5 {
		t.Fatalf("Stat after PutIf = %+v, want version %q and size 5", fi, v)
	}
	_, err := d.PutIf(ctx(t), p, bytes.NewReader([]byte("second")), 6, "")
	if !errors.Is(err, driver.ErrPreconditionFailed) {
		t.Fatalf("second create-if-absent: want ErrPreconditionFailed, got %v", err)
	}
	if errors.Is(err, driver.ErrNotFound) || errors.Is(err, driver.ErrUnavailable) || errors.Is(err, driver.ErrMisconfigured) {
		t.Errorf("failed condition wraps another class too: %v", err)
	}
	wantUnchanged(t, d, p, []byte("first"), v)

	put(t, d, dir+"/plain", []byte("plain put"))
	fi := stat(t, d, dir+"/plain")
	if _, err := d.PutIf(ctx(t), dir+"/plain", bytes.NewReader([]byte("x")), 1, ""); !errors.Is(err, driver.ErrPreconditionFailed) {
		t.Fatalf("create-if-absent over a Put object: want ErrPreconditionFailed, got %v", err)
	}
	wantUnchanged(t, d, dir+"/plain", []byte("plain put"), fi.Version)

	// Unknown size.
	v2, err := d.PutIf(ctx(t), dir+"/unsized", io.MultiReader(bytes.NewReader([]byte("un")), bytes.NewReader([]byte("sized"))), -1, "")
	if err != nil {
		t.Fatalf("PutIf with size -1: %v", err)
	}
	wantUnchanged(t, d, dir+"/unsized", []byte("unsized"), v2)
}

// testPutIfMatch: replace-if-version succeeds with the current version and returns a new
// version equal to Stat's (and to the reader's); a stale or made-up version, or a missing
// object, fails with ErrPreconditionFailed and changes nothing. Every PutIf changes the
// version.
func testPutIfMatch(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	p := dir + "/record"
	put(t, d, p, []byte("v0 via put"))
	v0 := stat(t, d, p).Version
	seen := map[string]bool{v0: true}
	cur, content := v0, []byte("v0 via put")
	for i := 1; i <= 3; i++ {
		b := fmt.Appendf(nil, "record generation %d", i)
		v := putIf(t, d, p, b, cur)
		if seen[v] {
			t.Fatalf("PutIf %d returned version %q, seen before", i, v)
		}
		seen[v] = true
		if fi := stat(t, d, p); fi.Version != v || fi.Size != int64(len(b)) {
			t.Fatalf("Stat after PutIf %d = %+v, want version %q, size %d", i, fi, v, len(b))
		}
		rc, err := d.Reader(ctx(t), p, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		if rv := driver.ReaderVersion(rc); rv != "" && rv != v {
			t.Errorf("Reader after PutIf %d reports version %q, PutIf %q", i, rv, v)
		}
		rc.Close()
		cur, content = v, b
	}
	for _, stale := range []string{v0, "no-such-version", "1"} {
		if stale == cur {
			continue
		}
		_, err := d.PutIf(ctx(t), p, bytes.NewReader([]byte("stale writer")), 12, stale)
		if !errors.Is(err, driver.ErrPreconditionFailed) {
			t.Fatalf("PutIf with stale version %q: want ErrPreconditionFailed, got %v", stale, err)
		}
		wantUnchanged(t, d, p, content, cur)
	}
	_, err := d.PutIf(ctx(t), dir+"/missing", bytes.NewReader([]byte("x")), 1, cur)
	if !errors.Is(err, driver.ErrPreconditionFailed) {
		t.Fatalf("PutIf with a version on a missing object: want ErrPreconditionFailed, got %v", err)
	}
	if errors.Is(err, driver.ErrNotFound) {
		t.Errorf("a failed condition on a missing object also wraps ErrNotFound: %v", err)
	}
	if _, err := d.Stat(ctx(t), dir+"/missing"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("failed PutIf created the object: %v", err)
	}
	// A deleted object's last version no longer matches.
	if err := d.Delete(ctx(t), p); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PutIf(ctx(t), p, bytes.NewReader([]byte("x")), 1, cur); !errors.Is(err, driver.ErrPreconditionFailed) {
		t.Fatalf("PutIf on a deleted object: want ErrPreconditionFailed, got %v", err)
	}
	if _, err := d.Stat(ctx(t), p); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("failed PutIf recreated the object: %v", err)
	}
}

// race runs n PutIf calls at once on p from ifVersion, each with its own body, and
// checks that exactly one succeeded, the others failed with ErrPreconditionFailed, and
// the object holds the winner's body at the winner's version.
func race(t *testing.T, d driver.Driver, p, ifVersion string, n int) {
	t.Helper()
	type result struct {
		v   string
		err error
	}
	results := make([]result, n)
	bodies := make([][]byte, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		bodies[i] = fmt.Appendf(nil, "contender %d of %s", i, randHex(4))
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v, err := d.PutIf(ctx(t), p, bytes.NewReader(bodies[i]), int64(len(bodies[i])), ifVersion)
			results[i] = result{v, err}
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, r := range results {
		switch {
		case r.err == nil && winner >= 0:
			t.Fatalf("contenders %d and %d both won (versions %q, %q)", winner, i, results[winner].v, r.v)
		case r.err == nil:
			winner = i
		case !errors.Is(r.err, driver.ErrPreconditionFailed):
			t.Errorf("contender %d: want success or ErrPreconditionFailed, got %v", i, r.err)
		}
	}
	if winner < 0 {
		t.Fatalf("no contender of %d won", n)
	}
	wantUnchanged(t, d, p, bodies[winner], results[winner].v)
}

// testPutIfRaceAbsent: of N concurrent create-if-absent calls, exactly one wins.
func testPutIfRaceAbsent(t *testing.T, h *Harness, dir string) {
	for round := range 3 {
		race(t, h.Driver, fmt.Sprintf("%s/absent-%d", dir, round), "", 8)
	}
}

// testPutIfRaceMatch: of N concurrent replace-if-version calls from the same version,
// exactly one wins.
func testPutIfRaceMatch(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	for round := range 3 {
		p := fmt.Sprintf("%s/match-%d", dir, round)
		v := putIf(t, d, p, []byte("seed "+randHex(4)), "")
		race(t, d, p, v, 8)
	}
}

// failingReader fails the test if it is read: arguments must be checked first.
type failingReader struct{ t *testing.T }

func (r failingReader) Read([]byte) (int, error) {
	r.t.Error("PutIf read the body of a call it must refuse first")
	return 0, io.EOF
}

// testPutIfRefused: an invalid path is ErrInvalidPath and a cancelled context the
// context's error, before the body is read; a body over MaxConditionalSize is
// ErrUnsupported. None of them stores anything.
func testPutIfRefused(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	for _, p := range []string{"", "/abs", "a//b", "a/../b", "trailing/", dir + "/sp ace", dir + "/t~ilde"} {
		for _, ifv := range []string{"", "1"} {
			if _, err := d.PutIf(ctx(t), p, failingReader{t}, 3, ifv); !errors.Is(err, driver.ErrInvalidPath) {
				t.Errorf("PutIf(%q, %q): want ErrInvalidPath, got %v", p, ifv, err)
			}
		}
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	put(t, d, dir+"/existing", []byte("e"))
	v := stat(t, d, dir+"/existing").Version
	for _, tc := range []struct{ p, ifv string }{{dir + "/new", ""}, {dir + "/existing", v}} {
		if _, err := d.PutIf(c, tc.p, failingReader{t}, 3, tc.ifv); !errors.Is(err, context.Canceled) {
			t.Errorf("PutIf(%s) with a cancelled context: want context.Canceled, got %v", tc.p, err)
		}
	}
	if _, err := d.Stat(ctx(t), dir+"/new"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("cancelled PutIf created an object: %v", err)
	}
	wantUnchanged(t, d, dir+"/existing", []byte("e"), v)

	big := int64(driver.MaxConditionalSize + 1)
	if _, err := d.PutIf(ctx(t), dir+"/big", failingReader{t}, big, ""); !errors.Is(err, driver.ErrUnsupported) {
		t.Errorf("PutIf of %d bytes: want ErrUnsupported, got %v", big, err)
	}
	if _, err := d.PutIf(ctx(t), dir+"/big", io.LimitReader(zeros{}, big), -1, ""); !errors.Is(err, driver.ErrUnsupported) {
		t.Errorf("PutIf of %d bytes of unknown size: want ErrUnsupported, got %v", big, err)
	}
	if _, err := d.Stat(ctx(t), dir+"/big"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("refused PutIf created an object: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

package fault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/fault"
	"github.com/registryd/registryd/driver/inmemory"
)

func seeded(t *testing.T) (*fault.Driver, context.Context) {
	t.Helper()
	ctx := context.Background()
	in := inmemory.New()
	for _, p := range []string{"a/one", "a/two", "b/three"} {
		if err := in.Put(ctx, p, strings.NewReader("content of "+p), -1); err != nil {
			t.Fatal(err)
		}
	}
	return fault.New(in), ctx
}

// call runs method on d against path "a/one" (or dir "a") and returns its error.
func call(ctx context.Context, d driver.Driver, method string) error {
	switch method {
	case fault.Stat:
		_, err := d.Stat(ctx, "a/one")
		return err
	case fault.Reader:
		rc, err := d.Reader(ctx, "a/one", 0, -1)
		if err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
		}
		return err
	case fault.Put:
		return d.Put(ctx, "a/one", strings.NewReader("content of a/one"), -1)
	case fault.PutIf:
		_, err := d.PutIf(ctx, "a/new-"+rand.Text(), strings.NewReader("created"), -1, "")
		return err
	case fault.Delete:
		return d.Delete(ctx, "a/gone-"+method) // NotFound when passed through
	case fault.List:
		_, err := d.List(ctx, "a", "", 0)
		return err
	case fault.Copy:
		return d.Copy(ctx, "a/two", "a/one-copy")
	case fault.URL:
		_, err := d.URL(ctx, "a/one", 0)
		return err
	case fault.Writer:
		_, err := d.Writer(ctx, "a/w", nil)
		return err
	}
	w, err := d.Writer(ctx, "a/w", nil)
	if err != nil {
		return err
	}
	switch method {
	case fault.Write:
		_, err = w.Write([]byte("x"))
	case fault.State:
		_, err = w.State(ctx)
	case fault.Commit:
		err = w.Commit(ctx)
	case fault.Abort:
		err = w.Abort(ctx)
	}
	return err
}

// TestEveryMethodEveryClass: a rule on one method fails exactly that method with the class
// wrapped in a PathError naming the path; the other methods pass through.
func TestEveryMethodEveryClass(t *testing.T) {
	for _, c := range fault.Classes() {
		for _, m := range fault.Methods() {
			t.Run(c.Name+"/"+m, func(t *testing.T) {
				d, ctx := seeded(t)
				d.Fail(c.Err, m)
				err := call(ctx, d, m)
				if !errors.Is(err, c.Err) {
					t.Fatalf("%s: got %v, want %v", m, err, c.Err)
				}
				var pe *driver.PathError
				if !errors.As(err, &pe) || (pe.Path != "a" && !strings.HasPrefix(pe.Path, "a/")) {
					t.Fatalf("%s: %v is not a PathError naming the path", m, err)
				}
				if errors.Is(err, driver.ErrNotFound) {
					t.Fatalf("%s: injected %v is also ErrNotFound", m, err)
				}
				for _, other := range fault.Methods() {
					if other == m || other == fault.Writer || (m == fault.Writer && other != fault.Stat) {
						continue
					}
					if err := call(ctx, d, other); errors.Is(err, c.Err) {
						t.Errorf("%s failed by a rule on %s: %v", other, m, err)
					}
				}
			})
		}
	}
}

func TestNthAfterTimesAndPaths(t *testing.T) {
	d, ctx := seeded(t)
	stat := func(p string) error { _, err := d.Stat(ctx, p); return err }

	id := d.Add(fault.Rule{Methods: []string{fault.Stat}, Nth: 3, Err: driver.ErrThrottled})
	for i := 1; i <= 5; i++ {
		if err := stat("a/one"); errors.Is(err, driver.ErrThrottled) != (i == 3) {
			t.Fatalf("Nth=3, call %d: %v", i, err)
		}
	}
	d.Remove(id)

	d.Add(fault.Rule{Methods: []string{fault.Stat}, After: 1, Times: 2, Err: driver.ErrUnavailable})
	var got []bool
	for range 5 {
		got = append(got, stat("a/one") != nil)
	}
	if want := []bool{false, true, true, false, false}; !equalBools(got, want) {
		t.Fatalf("After=1 Times=2: failures %v, want %v", got, want)
	}
	d.Clear()

	d.Add(fault.Rule{Glob: "a/*", Err: driver.ErrPermission})
	d.Add(fault.Rule{Contains: "three", Err: driver.ErrMisconfigured})
	d.Add(fault.Rule{Regexp: regexp.MustCompile(`^c/`), Err: driver.ErrUnavailable})
	for p, want := range map[string]error{"a/one": driver.ErrPermission, "b/three": driver.ErrMisconfigured, "c/x": driver.ErrUnavailable} {
		if err := stat(p); !errors.Is(err, want) {
			t.Errorf("stat %s: %v, want %v", p, err, want)
		}
	}
	if _, err := d.Stat(ctx, "b/x"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("unmatched path not passed through: %v", err)
	}
	d.Clear()
	if err := stat("a/one"); err != nil {
		t.Fatalf("after Clear: %v", err)
	}
	if d.Calls(fault.Stat) == 0 || d.Injected() == 0 {
		t.Fatalf("counts: %d calls, %d injected", d.Calls(fault.Stat), d.Injected())
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestInjectedCallsChangeNothing: a failed Put, Delete or Commit never reaches the backend.
func TestInjectedCallsChangeNothing(t *testing.T) {
	d, ctx := seeded(t)
	d.Fail(driver.ErrUnavailable, fault.Put, fault.PutIf, fault.Delete, fault.Copy, fault.Commit)
	_ = d.Put(ctx, "a/one", strings.NewReader("changed"), -1)
	_, _ = d.PutIf(ctx, "a/one", strings.NewReader("changed"), -1, "")
	if _, err := d.PutIf(ctx, "a/new", strings.NewReader("created"), -1, ""); !errors.Is(err, driver.ErrUnavailable) {
		t.Fatalf("putif: %v", err)
	}
	if _, err := d.Inner().Stat(ctx, "a/new"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("an injected PutIf failure created the object: %v", err)
	}
	_ = d.Delete(ctx, "a/two")
	_ = d.Copy(ctx, "b/three", "a/one")
	w, err := d.Writer(ctx, "a/one", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("new"))
	if err := w.Commit(ctx); !errors.Is(err, driver.ErrUnavailable) {
		t.Fatalf("commit: %v", err)
	}
	for p, want := range map[string]string{"a/one": "content of a/one", "a/two": "content of a/two"} {
		rc, err := d.Inner().Reader(ctx, p, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != want {
			t.Errorf("%s = %q after injected failures, want %q", p, b, want)
		}
	}
}

func TestBreakStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{{"unexpected EOF", nil}, {"unavailable", driver.ErrUnavailable}} {
		t.Run(tc.name, func(t *testing.T) {
			d, ctx := seeded(t)
			d.Add(fault.Rule{Methods: []string{fault.Reader}, Glob: "a/one", BreakStream: true, BreakAfter: 5, Err: tc.err, Times: 1})
			rc, err := d.Reader(ctx, "a/one", 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			want := tc.err
			if want == nil {
				want = io.ErrUnexpectedEOF
			}
			if string(b) != "conte" || !errors.Is(err, want) {
				t.Fatalf("broken stream gave %q, %v; want \"conte\", %v", b, err, want)
			}
			// Times: 1, so a ranged reopen at the break reads the rest.
			rc, err = d.Reader(ctx, "a/one", 5, -1)
			if err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || string(b)+string(rest) != "content of a/one" {
				t.Fatalf("reopen: %q %v", rest, err)
			}
			// Stream rules never fail other methods.
			if err := d.Put(ctx, "a/one", bytes.NewReader(nil), 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestConcurrentUse: rules added and cleared while many goroutines call (run with -race).
func TestConcurrentUse(t *testing.T) {
	d, ctx := seeded(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if g == 0 && i%20 == 0 {
					d.Clear()
					d.Add(fault.Rule{Err: driver.ErrThrottled, Times: 3})
				}
				err := call(ctx, d, fault.Methods()[i%len(fault.Methods())])
				if err != nil && !errors.Is(err, driver.ErrThrottled) && !errors.Is(err, driver.ErrNotFound) &&
					!errors.Is(err, driver.ErrUnsupported) {
					t.Errorf("unexpected error %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if d.Injected() == 0 {
		t.Fatal("no faults injected")
	}
}

// TestLost: a Lost rule lets the call change the backend and then reports the failure,
// as when the answer of an applied write is lost; a call that fails in the backend keeps
// its own error.
func TestLost(t *testing.T) {
	d, ctx := seeded(t)
	d.Add(fault.Rule{Methods: []string{fault.PutIf, fault.Put, fault.Delete, fault.Copy}, Lost: true, Err: driver.ErrUnavailable})
	if _, err := d.PutIf(ctx, "a/lease", strings.NewReader("mine"), -1, ""); !errors.Is(err, driver.ErrUnavailable) {
		t.Fatalf("lost PutIf: %v", err)
	}
	if fi, err := d.Inner().Stat(ctx, "a/lease"); err != nil || fi.Size != 4 {
		t.Fatalf("lost PutIf did not reach the backend: %+v, %v", fi, err)
	}
	// The repeated call fails in the backend: that answer is not replaced.
	if _, err := d.PutIf(ctx, "a/lease", strings.NewReader("mine"), -1, ""); !errors.Is(err, driver.ErrPreconditionFailed) || errors.Is(err, driver.ErrUnavailable) {
		t.Fatalf("repeated PutIf: want only ErrPreconditionFailed, got %v", err)
	}
	if err := d.Put(ctx, "a/put", strings.NewReader("p"), 1); !errors.Is(err, driver.ErrUnavailable) {
		t.Fatalf("lost Put: %v", err)
	}
	if err := d.Copy(ctx, "a/put", "a/copied"); !errors.Is(err, driver.ErrUnavailable) {
		t.Fatalf("lost Copy: %v", err)
	}
	if err := d.Delete(ctx, "a/two"); !errors.Is(err, driver.ErrUnavailable) {
		t.Fatalf("lost Delete: %v", err)
	}
	for p, exists := range map[string]bool{"a/put": true, "a/copied": true, "a/two": false} {
		if _, err := d.Inner().Stat(ctx, p); (err == nil) != exists {
			t.Errorf("%s: stat %v, want exists=%v", p, err, exists)
		}
	}
	// On other methods a Lost rule injects before the call.
	d.Add(fault.Rule{Methods: []string{fault.Stat}, Lost: true, Err: driver.ErrThrottled})
	if _, err := d.Stat(ctx, "a/one"); !errors.Is(err, driver.ErrThrottled) {
		t.Fatalf("Lost rule on Stat: %v", err)
	}
}

// TestHold: a held call waits until the test releases it, is announced on Held, lets
// other calls run meanwhile, then passes through (or fails with Err); a held call whose
// context ends fails with the context's error and changes nothing.
func TestHold(t *testing.T) {
	d, ctx := seeded(t)
	release, held := make(chan struct{}), make(chan string)
	d.Add(fault.Rule{Methods: []string{fault.Delete}, Glob: "a/*", Hold: release, Held: held, Times: 1})
	done := make(chan error)
	go func() { done <- d.Delete(ctx, "a/two") }()
	if p := <-held; p != "a/two" {
		t.Fatalf("held path %q", p)
	}
	// While the Delete is parked, other calls run, and the object is still there.
	if err := d.Put(ctx, "a/three", strings.NewReader("3"), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stat(ctx, "a/two"); err != nil {
		t.Fatalf("held Delete ran early: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("held Delete returned before release: %v", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("released Delete: %v", err)
	}
	if _, err := d.Stat(ctx, "a/two"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("released Delete did not delete: %v", err)
	}
	// Times: 1, the next Delete is not held.
	if err := d.Delete(ctx, "a/three"); err != nil {
		t.Fatal(err)
	}

	// Hold with Err: released, then fails without reaching the backend.
	release2 := make(chan struct{})
	d.Add(fault.Rule{Methods: []string{fault.PutIf}, Hold: release2, Err: driver.ErrThrottled, Times: 1})
	go func() { _, err := d.PutIf(ctx, "a/held", strings.NewReader("x"), 1, ""); done <- err }()
	close(release2)
	if err := <-done; !errors.Is(err, driver.ErrThrottled) {
		t.Fatalf("held PutIf with Err: %v", err)
	}

	// A held call gives up when its context ends.
	d.Add(fault.Rule{Methods: []string{fault.Put}, Hold: make(chan struct{}), Times: 1})
	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- d.Put(cctx, "a/one", strings.NewReader("changed"), -1) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("held Put with cancelled context: %v", err)
	}
	for p, want := range map[string]string{"a/one": "content of a/one"} {
		rc, err := d.Inner().Reader(ctx, p, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != want {
			t.Errorf("%s = %q, want %q", p, b, want)
		}
	}
	if _, err := d.Inner().Stat(ctx, "a/held"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("held PutIf with Err reached the backend: %v", err)
	}
}

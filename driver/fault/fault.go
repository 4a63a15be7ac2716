// Package fault is a driver.Driver wrapper for tests that injects the failures real backends
// produce and emulators cannot: any method failing with any error class of the driver
// contract (throttled, unavailable, permission, misconfigured, a context deadline), on the
// n-th call, for a number of calls or always, optionally only for some paths; read
// streams that break after a number of bytes; answers lost after the backend applied a
// change (Rule.Lost); and calls held in mid-flight until the test releases them
// (Rule.Hold), to reproduce races deterministically.
//
// Injected errors are wrapped the way a real driver wraps a classified SDK error
// (a *driver.PathError naming the operation and path, wrapping the class), so callers see
// exactly what they would see in production. An injected call never reaches the inner
// driver, so the backend is unchanged by it, except under a Lost rule.
//
// Who may import it: tests only.
package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/registryd/registryd/driver"
)

// Method names a rule can match: the Driver methods and the Writer operations.
const (
	Stat   = "Stat"
	Reader = "Reader"
	Put    = "Put"
	PutIf  = "PutIf"
	Delete = "Delete"
	List   = "List"
	Copy   = "Copy"
	Writer = "Writer"
	URL    = "URL"
	Write  = "Write"
	State  = "State"
	Commit = "Commit"
	Abort  = "Abort"
)

// Methods returns every method name a rule can match.
func Methods() []string {
	return []string{Stat, Reader, Put, PutIf, Delete, List, Copy, Writer, URL, Write, State, Commit, Abort}
}

// Class is one failure class of the driver contract that a backend can produce.
type Class struct {
	Name string
	Err  error
}

// Classes returns the failure classes every fault test covers: throttled, unavailable,
// permission, misconfigured, and a context deadline.
func Classes() []Class {
	return []Class{
		{"throttled", driver.ErrThrottled},
		{"unavailable", driver.ErrUnavailable},
		{"permission", driver.ErrPermission},
		{"misconfigured", driver.ErrMisconfigured},
		{"deadline", context.DeadlineExceeded},
	}
}

// Marker is part of every injected error's message, so tests can check it never reaches a
// client.
const Marker = "fault-injected"

// Rule describes which calls fail and how. A call matches a rule when its method is one of
// Methods (empty: every method) and its path matches every path condition that is set.
// Among the matching calls, the rule fires on the Nth (when Nth > 0), otherwise on those
// after the first After, at most Times of them (Times == 0: all).
type Rule struct {
	// Methods restricts the rule to these method names (see the constants); empty means all.
	Methods []string
	// Glob, when set, must match the path with path.Match ("docker/registry/v2/blobs/*/*/*/data").
	Glob string
	// Contains, when set, must be a substring of the path.
	Contains string
	// Regexp, when set, must match the path.
	Regexp *regexp.Regexp

	// Nth > 0 makes the rule fire on the Nth matching call only (1-based).
	Nth int
	// After lets the first After matching calls pass (ignored when Nth > 0).
	After int
	// Times bounds how many matching calls the rule fires on (0: unbounded; ignored when
	// Nth > 0).
	Times int

	// Err is the error class to inject: driver.ErrThrottled, driver.ErrUnavailable,
	// driver.ErrPermission, driver.ErrMisconfigured, driver.ErrNotFound,
	// context.DeadlineExceeded, ... It is wrapped with the operation and path. Required
	// unless BreakStream or Hold is set.
	Err error

	// Hold, when set, makes each call the rule fires on wait, before it reaches the inner
	// driver, until Hold is closed (or yields a value) or the call's context ends (the call
	// then fails with the context's error, like a backend call would; a held Write
	// waits on the context of the Writer call that opened its writer). Then the call
	// passes through, or fails with Err when Err is set. Tests use it to stop one call in mid-flight while
	// others run (a GC sweep's Delete while a push commits, say).
	Hold <-chan struct{}
	// Held, when set with Hold, receives the path of each call as it starts waiting, so a
	// test knows the call is parked. The send blocks until the test receives it (or the
	// call's context ends).
	Held chan<- string

	// Lost, with Err, lets the call reach the inner driver and, when it succeeds there,
	// replaces its answer with Err: the backend applied the change but the caller sees a
	// failure, as when a response is lost to a timeout or a reset. A call that fails in the
	// inner driver returns that failure. It applies to Put, PutIf, Delete and Copy; on
	// other methods the rule injects Err before the call, as without Lost.
	Lost bool

	// BreakStream, on a Reader rule, lets the Reader call succeed and makes the returned
	// stream deliver BreakAfter bytes and then fail with Err (io.ErrUnexpectedEOF when Err
	// is nil).
	BreakStream bool
	// BreakAfter is the number of bytes a broken stream delivers before it fails.
	BreakAfter int64
}

// Driver wraps a driver.Driver and injects the failures of its rules. It is safe for
// concurrent use; rules can be added and removed while calls are in flight.
type Driver struct {
	inner driver.Driver

	mu       sync.Mutex
	rules    []*rule
	next     int
	calls    map[string]int
	injected int
}

type rule struct {
	id   int
	r    Rule
	seen int // matching calls so far
	hits int // times fired
}

var _ driver.Driver = (*Driver)(nil)

// New returns a Driver over inner with no rules: every call passes through.
func New(inner driver.Driver) *Driver {
	return &Driver{inner: inner, calls: map[string]int{}}
}

// Inner returns the wrapped driver, to inspect or alter the backend behind the faults.
func (d *Driver) Inner() driver.Driver { return d.inner }

// Add installs r and returns its id (for Remove). Rules are consulted in the order added;
// every matching rule counts the call, the first that fires decides the failure.
func (d *Driver) Add(r Rule) int {
	if r.Err == nil && !r.BreakStream && r.Hold == nil {
		panic("fault: Rule needs Err, BreakStream or Hold")
	}
	if r.Lost && r.Err == nil {
		panic("fault: a Lost rule needs Err")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next++
	d.rules = append(d.rules, &rule{id: d.next, r: r})
	return d.next
}

// Fail is Add(Rule{Err: err, Methods: methods}): every call of the methods (all when none
// are given) fails with err until the rule is removed.
func (d *Driver) Fail(err error, methods ...string) int {
	return d.Add(Rule{Err: err, Methods: methods})
}

// Remove uninstalls the rule with id.
func (d *Driver) Remove(id int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, r := range d.rules {
		if r.id == id {
			d.rules = append(d.rules[:i:i], d.rules[i+1:]...)
			return
		}
	}
}

// Clear removes every rule.
func (d *Driver) Clear() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rules = nil
}

// Calls returns how many calls of method were made (injected or passed through) since New
// or ResetCounts.
func (d *Driver) Calls(method string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[method]
}

// Injected returns how many faults were injected since New or ResetCounts.
func (d *Driver) Injected() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.injected
}

// ResetCounts zeroes Calls and Injected (the rules keep their own counts).
func (d *Driver) ResetCounts() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = map[string]int{}
	d.injected = 0
}

func (r *rule) matches(method, p string) bool {
	if r.r.BreakStream && method != Reader {
		return false
	}
	if len(r.r.Methods) > 0 {
		ok := false
		for _, m := range r.r.Methods {
			ok = ok || m == method
		}
		if !ok {
			return false
		}
	}
	if r.r.Glob != "" {
		if ok, _ := path.Match(r.r.Glob, p); !ok {
			return false
		}
	}
	if r.r.Contains != "" && !strings.Contains(p, r.r.Contains) {
		return false
	}
	if r.r.Regexp != nil && !r.r.Regexp.MatchString(p) {
		return false
	}
	return true
}

// fires counts a matching call and reports whether the rule fires on it.
func (r *rule) fires() bool {
	r.seen++
	switch {
	case r.r.Nth > 0:
		return r.seen == r.r.Nth
	case r.seen <= r.r.After:
		return false
	case r.r.Times > 0 && r.hits >= r.r.Times:
		return false
	}
	return true
}

// decide records a call and returns the rule that fires on it, if any.
func (d *Driver) decide(method, p string) *Rule {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls[method]++
	var fired *Rule
	for _, r := range d.rules {
		if !r.matches(method, p) || !r.fires() {
			continue
		}
		if fired == nil {
			r.hits++
			rr := r.r
			fired = &rr
		}
	}
	if fired != nil {
		d.injected++
	}
	return fired
}

// check returns the rule that fires on a call (nil: pass it through) and the error to
// inject before the call; a BreakStream rule (Reader only) injects no error here, a Lost
// rule injects its error after the call (see after), a Hold rule waits first. ctx is the
// call's context.
func (d *Driver) check(ctx context.Context, method, p string) (*Rule, error) {
	r := d.decide(method, p)
	if r == nil {
		return nil, nil
	}
	if r.Hold != nil {
		if err := hold(ctx, r, p); err != nil {
			return r, &driver.PathError{Op: strings.ToLower(method), Path: p, Err: err}
		}
	}
	if r.BreakStream || r.Err == nil || (r.Lost && losable(method)) {
		return r, nil
	}
	return r, injected(method, p, r.Err)
}

// hold parks a call of rule r on path p until r.Hold releases it or ctx ends, announcing
// it on r.Held first.
func hold(ctx context.Context, r *Rule, p string) error {
	if r.Held != nil {
		select {
		case r.Held <- p:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case <-r.Hold:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// losable reports whether a Lost rule lets calls of method through (others fail before the
// call, as without Lost).
func losable(method string) bool {
	return method == Put || method == PutIf || method == Delete || method == Copy
}

// after returns the answer of a call that reached the inner driver with err: a Lost rule
// replaces success with its error.
func after(r *Rule, method, p string, err error) error {
	if err == nil && r != nil && r.Lost {
		return injected(method, p, r.Err)
	}
	return err
}

// injected wraps class like a driver's classify does: the operation and path, the class,
// and a description of the (simulated) backend failure.
func injected(method, p string, class error) error {
	op := strings.ToLower(method)
	if errors.Is(class, context.Canceled) || errors.Is(class, context.DeadlineExceeded) {
		return &driver.PathError{Op: op, Path: p, Err: class}
	}
	return &driver.PathError{Op: op, Path: p, Err: fmt.Errorf("%w: %s: simulated backend failure", class, Marker)}
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return d.inner.Name() }

// Stat implements driver.Driver.
func (d *Driver) Stat(ctx context.Context, p string) (driver.Info, error) {
	if _, err := d.check(ctx, Stat, p); err != nil {
		return driver.Info{}, err
	}
	return d.inner.Stat(ctx, p)
}

// Reader implements driver.Driver.
func (d *Driver) Reader(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	r, err := d.check(ctx, Reader, p)
	if err != nil {
		return nil, err
	}
	rc, err := d.inner.Reader(ctx, p, offset, length)
	if err != nil || r == nil || !r.BreakStream {
		return rc, err
	}
	cause := r.Err
	if cause == nil {
		cause = io.ErrUnexpectedEOF
	} else {
		cause = injected("read", p, cause)
	}
	return &brokenReader{rc: rc, left: r.BreakAfter, err: cause}, nil
}

// brokenReader delivers left bytes of rc, then fails with err.
type brokenReader struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (b *brokenReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *brokenReader) Close() error { return b.rc.Close() }

// Version passes the wrapped stream's version through (driver.VersionedReader).
func (b *brokenReader) Version() string { return driver.ReaderVersion(b.rc) }

// ObjectSize passes the wrapped stream's object size through (driver.SizedReader).
func (b *brokenReader) ObjectSize() int64 { return driver.ReaderSize(b.rc) }

// Put implements driver.Driver.
func (d *Driver) Put(ctx context.Context, p string, r io.Reader, size int64) error {
	rule, err := d.check(ctx, Put, p)
	if err != nil {
		return err
	}
	return after(rule, Put, p, d.inner.Put(ctx, p, r, size))
}

// PutIf implements driver.Driver.
func (d *Driver) PutIf(ctx context.Context, p string, r io.Reader, size int64, ifVersion string) (string, error) {
	rule, err := d.check(ctx, PutIf, p)
	if err != nil {
		return "", err
	}
	v, err := d.inner.PutIf(ctx, p, r, size, ifVersion)
	if err = after(rule, PutIf, p, err); err != nil {
		return "", err
	}
	return v, nil
}

// Delete implements driver.Driver.
func (d *Driver) Delete(ctx context.Context, p string) error {
	rule, err := d.check(ctx, Delete, p)
	if err != nil {
		return err
	}
	return after(rule, Delete, p, d.inner.Delete(ctx, p))
}

// List implements driver.Driver. Rules match the listed directory.
func (d *Driver) List(ctx context.Context, dir, after string, limit int) ([]driver.Info, error) {
	if _, err := d.check(ctx, List, dir); err != nil {
		return nil, err
	}
	return d.inner.List(ctx, dir, after, limit)
}

// Copy implements driver.Driver. Rules match the destination path.
func (d *Driver) Copy(ctx context.Context, src, dst string) error {
	rule, err := d.check(ctx, Copy, dst)
	if err != nil {
		return err
	}
	return after(rule, Copy, dst, d.inner.Copy(ctx, src, dst))
}

// URL implements driver.Driver.
func (d *Driver) URL(ctx context.Context, p string, expiry time.Duration) (string, error) {
	if _, err := d.check(ctx, URL, p); err != nil {
		return "", err
	}
	return d.inner.URL(ctx, p, expiry)
}

// PurgeSessions implements driver.SessionPurger: the Delete rules apply with path, then
// the inner driver's PurgeSessions, if it has one.
func (d *Driver) PurgeSessions(ctx context.Context, p string) error {
	if _, err := d.check(ctx, Delete, p); err != nil {
		return err
	}
	return driver.PurgeSessions(ctx, d.inner, p)
}

// Writer implements driver.Driver. The writer it returns consults the rules on Write,
// State, Commit and Abort with the writer's path.
func (d *Driver) Writer(ctx context.Context, p string, resume []byte) (driver.Writer, error) {
	if _, err := d.check(ctx, Writer, p); err != nil {
		return nil, err
	}
	w, err := d.inner.Writer(ctx, p, resume)
	if err != nil {
		return nil, err
	}
	return &faultWriter{d: d, w: w, path: p, ctx: ctx}, nil
}

type faultWriter struct {
	d    *Driver
	w    driver.Writer
	path string
	// ctx is the Writer call's context, which bounds the writer's life (driver.Writer):
	// a held Write waits on it.
	ctx context.Context
}

func (w *faultWriter) Write(b []byte) (int, error) {
	if _, err := w.d.check(w.ctx, Write, w.path); err != nil {
		return 0, err
	}
	return w.w.Write(b)
}

func (w *faultWriter) Size() int64 { return w.w.Size() }

func (w *faultWriter) State(ctx context.Context) ([]byte, error) {
	if _, err := w.d.check(ctx, State, w.path); err != nil {
		return nil, err
	}
	return w.w.State(ctx)
}

func (w *faultWriter) Commit(ctx context.Context) error {
	if _, err := w.d.check(ctx, Commit, w.path); err != nil {
		return err
	}
	return w.w.Commit(ctx)
}

// CommitTo implements driver.CommitterTo: the Commit rules apply with the writer's path,
// then the inner writer's CommitTo, or Commit and the Copy rules when it has none.
func (w *faultWriter) CommitTo(ctx context.Context, dst string) (string, error) {
	if _, err := w.d.check(ctx, Commit, w.path); err != nil {
		return "", err
	}
	return driver.CommitTo(ctx, w.d, w.w, w.path, dst)
}

func (w *faultWriter) Abort(ctx context.Context) error {
	if _, err := w.d.check(ctx, Abort, w.path); err != nil {
		return err
	}
	return w.w.Abort(ctx)
}

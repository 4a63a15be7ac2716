package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/fault"
	"github.com/registryd/registryd/driver/inmemory"
)

// countingDriver counts List calls and the calls in flight.
type countingDriver struct {
	driver.Driver
	lists    atomic.Int64
	inFlight atomic.Int64
}

func (c *countingDriver) List(ctx context.Context, dir, after string, limit int) ([]driver.Info, error) {
	c.lists.Add(1)
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	return c.Driver.List(ctx, dir, after, limit)
}

// putObject stores a small object or fails the test.
func putObject(t *testing.T, d driver.Driver, p string) {
	t.Helper()
	if err := d.Put(context.Background(), p, strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
}

// walkTree is a repositories tree with the names whose byte order differs from a
// directory-by-directory walk ('-' and '.' sort before '/'), namespaces that are not
// repositories, and each kind of repository directory.
func walkTree(t *testing.T, d driver.Driver) []string {
	t.Helper()
	repos := []string{
		"a", "a-b", "a-b/c", "a-b/c-d/e", "a.c", "a/b", "a/b-x", "a/b-x/y", "a/b.y", "a/b/c",
		"a/b/c-1", "a/b/c/d", "a/b0", "a0", "b", "ns/x/y", "ns/x/y-z", "ns/x-w", "z/z/z/z",
		"uploads/only", "layers.only",
	}
	for _, r := range repos {
		switch {
		case strings.HasPrefix(r, "uploads"):
			putObject(t, d, repoDir(r)+"/_uploads/id/startedat")
		case strings.HasPrefix(r, "layers"):
			putObject(t, d, repoDir(r)+"/_layers/sha256/ab/link")
		default:
			putObject(t, d, tagCurrentPath(r, "latest"))
		}
	}
	// Not repositories: a directory with only referrer records, and stray files.
	putObject(t, d, repoDir("ns/refs")+"/_referrers/sha256/ab/sha256-cd")
	putObject(t, d, repoDir("ns")+"/stray")
	slices.Sort(repos)
	return repos
}

func collect(t *testing.T, r *Registry, after string) []string {
	t.Helper()
	got := []string{}
	for name, err := range r.Repositories(context.Background(), after) {
		if err != nil {
			t.Fatalf("Repositories(%q): %v", after, err)
		}
		got = append(got, name)
	}
	return got
}

func TestRepositoriesOrderAndAfter(t *testing.T) {
	mem := inmemory.New()
	all := walkTree(t, mem)
	r := newTestRegistry(t, mem)
	if got := collect(t, r, ""); !slices.Equal(got, all) {
		t.Fatalf("full walk:\n got %q\nwant %q", got, all)
	}
	// Every name, every name's prefixes and a few names that are not there.
	afters := []string{"", "0", "a-", "a-a", "a-c", "a/", "a/b-", "a/b/", "a/b/c-0", "a/c", "ns/x", "ns/x-v", "ns/x/y-a", "zz", "~"}
	for _, name := range all {
		afters = append(afters, name)
		for i := range name {
			afters = append(afters, name[:i+1])
		}
	}
	for _, after := range afters {
		want := []string{}
		for _, n := range all {
			if n > after {
				want = append(want, n)
			}
		}
		if got := collect(t, r, after); !slices.Equal(got, want) {
			t.Errorf("after %q:\n got %q\nwant %q", after, got, want)
		}
	}
}

// TestRepositoriesLargeDirectory walks a directory of more than one List page, with
// names on both sides of the page boundary that nest.
func TestRepositoriesLargeDirectory(t *testing.T) {
	mem := inmemory.New()
	var all []string
	for i := range walkPage + 300 {
		all = append(all, fmt.Sprintf("big/r%04d", i))
	}
	all = append(all, "big/r0999-x", "big/r0999/y", "big/r1000/z", "big/r1000.1")
	for _, n := range all {
		putObject(t, mem, tagCurrentPath(n, "t"))
	}
	slices.Sort(all)
	r := newTestRegistry(t, mem)
	if got := collect(t, r, ""); !slices.Equal(got, all) {
		t.Fatalf("full walk: got %d names, want %d; first difference at %d", len(got), len(all), firstDiff(got, all))
	}
	for _, after := range []string{"big/r0998", "big/r0999", "big/r0999-x", "big/r0999/y", "big/r1000", "big/r1299"} {
		i, _ := slices.BinarySearch(all, after)
		want := all[i:]
		if len(want) > 0 && want[0] == after {
			want = want[1:]
		}
		if got := collect(t, r, after); !slices.Equal(got, want) {
			t.Errorf("after %q: got %d names, want %d; first difference at %d", after, len(got), len(want), firstDiff(got, want))
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestCatalogPageCost checks a catalog page costs List calls in proportion to the page,
// not to the registry, and that nothing runs on after the page is read.
func TestCatalogPageCost(t *testing.T) {
	mem := inmemory.New()
	for i := range 1000 {
		putObject(t, mem, tagCurrentPath(fmt.Sprintf("bench/repo-%04d", i), "t"))
	}
	cd := &countingDriver{Driver: mem}
	r := newTestRegistry(t, cd)
	ctx := context.Background()
	for _, tc := range []struct {
		last     string
		n        int
		want     []string
		more     bool
		maxCalls int64
		minCalls int64
	}{
		{"", 3, []string{"bench/repo-0000", "bench/repo-0001", "bench/repo-0002"}, true, 2 + 4 + walkWindow, 2 + 3},
		{"bench/repo-0500", 2, []string{"bench/repo-0501", "bench/repo-0502"}, true, 3 + 3 + walkWindow, 3 + 2},
		{"bench/repo-0997", 5, []string{"bench/repo-0998", "bench/repo-0999"}, false, 10, 4},
		{"bench/repo-0999", 5, []string{}, false, 4, 2},
	} {
		cd.lists.Store(0)
		got, more, err := r.Catalog(ctx, tc.last, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) || more != tc.more {
			t.Errorf("Catalog(%q, %d) = %q, %v; want %q, %v", tc.last, tc.n, got, more, tc.want, tc.more)
		}
		if calls := cd.lists.Load(); calls > tc.maxCalls || calls < tc.minCalls {
			t.Errorf("Catalog(%q, %d): %d List calls, want %d to %d", tc.last, tc.n, calls, tc.minCalls, tc.maxCalls)
		}
		if n := cd.inFlight.Load(); n != 0 {
			t.Errorf("Catalog(%q, %d): %d List calls still running after it returned", tc.last, tc.n, n)
		}
	}
}

// TestRepositoriesStopsEarly checks that a consumer stopping ends every call of the walk.
func TestRepositoriesStopsEarly(t *testing.T) {
	mem := inmemory.New()
	for i := range 200 {
		putObject(t, mem, tagCurrentPath(fmt.Sprintf("ns%d/repo%03d", i%3, i), "t"))
	}
	cd := &countingDriver{Driver: mem}
	r := newTestRegistry(t, cd)
	k := 0
	for _, err := range r.Repositories(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		if k++; k == 5 {
			break
		}
	}
	if n := cd.inFlight.Load(); n != 0 {
		t.Errorf("%d List calls still running after the loop stopped", n)
	}
	if calls := cd.lists.Load(); calls > 5+2*walkWindow+4 {
		t.Errorf("%d List calls for 5 names", calls)
	}
}

// TestRepositoriesBackendError checks a failing List ends the walk with that error, never
// with a shorter list that looks complete.
func TestRepositoriesBackendError(t *testing.T) {
	mem := inmemory.New()
	all := walkTree(t, mem)
	for _, glob := range []string{repositoriesDir(), repoDir("a"), repoDir("a/b"), repoDir("a/b/c"), repoDir("ns/x")} {
		t.Run(glob, func(t *testing.T) {
			fd := fault.New(mem)
			fd.Add(fault.Rule{Methods: []string{fault.List}, Glob: glob, Err: driver.ErrUnavailable})
			r := newTestRegistry(t, fd)
			var got []string
			var errs []error
			for name, err := range r.Repositories(context.Background(), "") {
				if err != nil {
					errs = append(errs, err)
					continue
				}
				got = append(got, name)
			}
			if len(errs) != 1 || !errors.Is(errs[0], driver.ErrUnavailable) {
				t.Fatalf("errors %v, want one ErrUnavailable", errs)
			}
			if len(got) >= len(all) || !slices.Equal(got, all[:len(got)]) {
				t.Errorf("names before the error %q are not a prefix of the walk", got)
			}
			if _, _, err := r.Catalog(context.Background(), "", -1); !errors.Is(err, driver.ErrUnavailable) {
				t.Errorf("Catalog: %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestBefore(t *testing.T) {
	names := []string{"a", "a-", "a-b", "a.b", "a0", "a_", "aa", "ab", "b", "0", "-"}
	for _, s := range names {
		b := before(s)
		for _, n := range names {
			if (n > b) != (n >= s) {
				t.Errorf("before(%q) = %q: %q > it is %v", s, b, n, n > b)
			}
		}
	}
}

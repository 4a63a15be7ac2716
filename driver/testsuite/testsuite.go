// Package testsuite is the one conformance suite every registryd driver must pass. A driver's
// test calls Run with a Harness; each case is a named subtest working under its own random
// directory, and fails if it leaves any object behind.
//
// Who may import it: driver tests only.
package testsuite

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/registryd/registryd/driver"
)

// Harness describes the driver under test.
type Harness struct {
	// Driver is the driver under test, already connected to a fresh, empty bucket or root.
	Driver driver.Driver
	// PartSize is the driver's part size as configured for the test (the boundary cases
	// write PartSize-1, PartSize and PartSize+1 bytes). Default 5 MiB.
	PartSize int64
	// LargeSize is the size of the large resumed-write case (default 256 MiB; written in
	// unaligned 7 MiB chunks with a new Writer resumed from State for every chunk).
	LargeSize int64
	// ListCount is the number of keys of the paginated listing case (default 1100).
	ListCount int
}

func (h *Harness) defaults() {
	if h.PartSize == 0 {
		h.PartSize = 5 << 20
	}
	if h.LargeSize == 0 {
		h.LargeSize = 256 << 20
	}
	if h.ListCount == 0 {
		h.ListCount = 1100
	}
}

// Run runs every conformance case against h.Driver.
func Run(t *testing.T, h Harness) {
	h.defaults()
	cases := []struct {
		name string
		fn   func(t *testing.T, h *Harness, dir string)
	}{
		{"InvalidPaths", testInvalidPaths},
		{"NotFound", testNotFound},
		{"PutReadStat", testPutReadStat},
		{"Ranges", testRanges},
		{"List", testList},
		{"ListPaginated", testListPaginated},
		{"Delete", testDelete},
		{"Copy", testCopy},
		{"Versions", testVersions},
		{"WriterSizes", testWriterSizes},
		{"WriterCommitTo", testWriterCommitTo},
		{"WriterInvisibleUntilCommit", testWriterInvisible},
		{"WriterResumeSmallChunks", testWriterResumeSmall},
		{"WriterResumeLarge", testWriterResumeLarge},
		{"WriterStaleState", testWriterStale},
		{"WriterUnacknowledgedDiscarded", testWriterUnacknowledged},
		{"WriterAbort", testWriterAbort},
		{"WriterGarbageState", testWriterGarbage},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentPutSamePath", testConcurrentPut},
		{"ContextCanceled", testContextCanceled},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfMatch", testPutIfMatch},
		{"PutIfRaceAbsent", testPutIfRaceAbsent},
		{"PutIfRaceMatch", testPutIfRaceMatch},
		{"PutIfRefused", testPutIfRefused},
		{"URL", testURL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := "suite-" + randHex(6)
			c.fn(t, &h, dir)
			assertEmpty(t, h.Driver, dir)
		})
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return c
}

// assertEmpty deletes everything under dir after a case and fails if the case left
// objects the driver should have removed itself (checked before the delete by each case
// as needed) or if the delete did not remove everything.
func assertEmpty(t *testing.T, d driver.Driver, dir string) {
	t.Helper()
	c := context.Background()
	if err := d.Delete(c, dir); err != nil && !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("cleanup delete %s: %v", dir, err)
	}
	left, err := d.List(c, dir, "", 0)
	if err != nil {
		t.Fatalf("list after cleanup: %v", err)
	}
	if len(left) != 0 {
		t.Errorf("objects left under %s after recursive delete: %v", dir, left)
	}
}

func put(t *testing.T, d driver.Driver, p string, b []byte) {
	t.Helper()
	if err := d.Put(ctx(t), p, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("put %s: %v", p, err)
	}
}

func read(t *testing.T, d driver.Driver, p string, off, n int64) []byte {
	t.Helper()
	r, err := d.Reader(ctx(t), p, off, n)
	if err != nil {
		t.Fatalf("reader %s@%d+%d: %v", p, off, n, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return b
}

func randBytes(n int64) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("%s: want ErrNotFound, got %v", what, err)
	}
}

func testInvalidPaths(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	for _, p := range []string{"", "/", "/abs", "trailing/", "a//b", "a/../b", "./a", "a/.", "sp ace", "a\x00b", "ü"} {
		_, err := d.Stat(ctx(t), p)
		if !errors.Is(err, driver.ErrInvalidPath) {
			t.Errorf("Stat(%q): want ErrInvalidPath, got %v", p, err)
		}
		err = d.Put(ctx(t), p, bytes.NewReader(nil), 0)
		if !errors.Is(err, driver.ErrInvalidPath) {
			t.Errorf("Put(%q): want ErrInvalidPath, got %v", p, err)
		}
		if _, err = d.Writer(ctx(t), p, nil); !errors.Is(err, driver.ErrInvalidPath) {
			t.Errorf("Writer(%q): want ErrInvalidPath, got %v", p, err)
		}
	}
}

func testNotFound(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	p := dir + "/missing"
	_, err := d.Stat(ctx(t), p)
	wantNotFound(t, "Stat", err)
	_, err = d.Reader(ctx(t), p, 0, -1)
	wantNotFound(t, "Reader", err)
	wantNotFound(t, "Delete", d.Delete(ctx(t), p))
	wantNotFound(t, "Copy", d.Copy(ctx(t), p, dir+"/dst"))
	l, err := d.List(ctx(t), dir+"/nodir", "", 0)
	if err != nil || len(l) != 0 {
		t.Errorf("List of missing dir: want empty and nil, got %v, %v", l, err)
	}
	// A directory is not an object.
	put(t, d, dir+"/sub/obj", []byte("x"))
	_, err = d.Stat(ctx(t), dir+"/sub")
	wantNotFound(t, "Stat of a directory", err)
	// A key that is a prefix of another key's name is not its directory.
	_, err = d.Stat(ctx(t), dir+"/sub/ob")
	wantNotFound(t, "Stat of a name prefix", err)
}

func testPutReadStat(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	for _, n := range []int64{0, 1, 1024, 1<<20 + 3} {
		p := fmt.Sprintf("%s/obj-%d", dir, n)
		b := randBytes(n)
		before := time.Now().Add(-time.Minute)
		put(t, d, p, b)
		fi, err := d.Stat(ctx(t), p)
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		if fi.Size != n || fi.IsDir || fi.Path != p {
			t.Errorf("stat %s: got %+v", p, fi)
		}
		if fi.ModTime.Before(before) {
			t.Errorf("stat %s: modtime %v too old", p, fi.ModTime)
		}
		if got := read(t, d, p, 0, -1); !bytes.Equal(got, b) {
			t.Errorf("read %s: content differs (got %d bytes)", p, len(got))
		}
	}
	// Overwrite, and Put with unknown size.
	p := dir + "/obj-1"
	b := []byte("second version, longer than the first")
	if err := d.Put(ctx(t), p, io.NopCloser(bytes.NewReader(b)), -1); err != nil {
		t.Fatalf("put unknown size: %v", err)
	}
	if got := read(t, d, p, 0, -1); !bytes.Equal(got, b) {
		t.Errorf("overwrite: got %q", got)
	}
}

func testRanges(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	p := dir + "/ranged"
	b := randBytes(100000)
	put(t, d, p, b)
	for _, r := range []struct{ off, n int64 }{{0, -1}, {0, 1}, {1, 10}, {99999, 1}, {99999, -1}, {100000, -1}, {100000, 0}, {5000, 50000}, {50000, 100000}} {
		got := read(t, d, p, r.off, r.n)
		end := int64(len(b))
		if r.n >= 0 && r.off+r.n < end {
			end = r.off + r.n
		}
		if !bytes.Equal(got, b[r.off:end]) {
			t.Errorf("range %d+%d: got %d bytes, want %d", r.off, r.n, len(got), end-r.off)
		}
	}
}

func names(l []driver.Info) []string {
	s := make([]string, len(l))
	for i, fi := range l {
		s[i] = fi.Path
		if fi.IsDir {
			s[i] += "/"
		}
	}
	return s
}

func testList(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	for _, p := range []string{"b", "a/x", "a/y/z", "c-d", "c/e", "c.f"} {
		put(t, d, dir+"/"+p, []byte(p))
	}
	got, err := d.List(ctx(t), dir, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{dir + "/a/", dir + "/b", dir + "/c/", dir + "/c-d", dir + "/c.f"}
	sort.Strings(want)
	// Byte order of the paths (dirs compared without their trailing slash).
	wantPaths := []string{dir + "/a", dir + "/b", dir + "/c", dir + "/c-d", dir + "/c.f"}
	sort.Strings(wantPaths)
	gotPaths := make([]string, len(got))
	for i, fi := range got {
		gotPaths[i] = fi.Path
	}
	if fmt.Sprint(gotPaths) != fmt.Sprint(wantPaths) {
		t.Errorf("List order: got %v, want %v", gotPaths, wantPaths)
	}
	dirs := map[string]bool{dir + "/a": true, dir + "/c": true}
	for _, fi := range got {
		if fi.IsDir != dirs[fi.Path] {
			t.Errorf("List: %s IsDir=%v", fi.Path, fi.IsDir)
		}
		if !fi.IsDir && fi.Size != int64(len(fi.Path)-len(dir)-1) {
			t.Errorf("List: %s size %d", fi.Path, fi.Size)
		}
	}
	got, err = d.List(ctx(t), dir, dir+"/b", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Path != dir+"/c" || got[1].Path != dir+"/c-d" {
		t.Errorf("List after b limit 2: got %v", names(got))
	}
	// A bound that names no entry and is no valid path (the repository walk lists "at or
	// after c" with "b~", above every name beginning with "b"): a string comparison.
	for _, tc := range []struct{ after, first string }{{dir + "/b~", dir + "/c"}, {dir + "/c,~", dir + "/c-d"}, {dir + "/c-~", dir + "/c.f"}} {
		got, err = d.List(ctx(t), dir, tc.after, 1)
		if err != nil {
			t.Fatalf("List after %q: %v", tc.after, err)
		}
		if len(got) != 1 || got[0].Path != tc.first {
			t.Errorf("List after %q limit 1: got %v, want %s", tc.after, names(got), tc.first)
		}
	}
	got, err = d.List(ctx(t), dir+"/a", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names(got)) != fmt.Sprint([]string{dir + "/a/x", dir + "/a/y/"}) {
		t.Errorf("List subdir: got %v", names(got))
	}
}

func testListPaginated(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	want := make([]string, h.ListCount)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, h.ListCount)
	for i := range want {
		want[i] = fmt.Sprintf("%s/k%05d", dir, i)
		wg.Add(1)
		sem <- struct{}{}
		go func(p string) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := d.Put(context.Background(), p, bytes.NewReader([]byte("x")), 1); err != nil {
				errs <- err
			}
		}(want[i])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("put: %v", err)
	}
	all, err := d.List(ctx(t), dir, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(want) {
		t.Fatalf("List all: got %d entries, want %d", len(all), len(want))
	}
	var paged []string
	after := ""
	for {
		page, err := d.List(ctx(t), dir, after, 333)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 333 {
			t.Fatalf("page of %d over limit", len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, fi := range page {
			paged = append(paged, fi.Path)
		}
		after = page[len(page)-1].Path
	}
	if fmt.Sprint(paged) != fmt.Sprint(want) {
		t.Errorf("paged listing differs: got %d entries", len(paged))
	}
}

func testDelete(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	for _, p := range []string{"a/b/c", "a/b/d", "a/bc", "a/e", "x"} {
		put(t, d, dir+"/"+p, []byte(p))
	}
	if err := d.Delete(ctx(t), dir+"/a/b"); err != nil {
		t.Fatalf("delete dir: %v", err)
	}
	for _, p := range []string{"a/b/c", "a/b/d"} {
		_, err := d.Stat(ctx(t), dir+"/"+p)
		wantNotFound(t, "stat after delete "+p, err)
	}
	for _, p := range []string{"a/bc", "a/e", "x"} {
		if _, err := d.Stat(ctx(t), dir+"/"+p); err != nil {
			t.Errorf("sibling %s gone after deleting a/b: %v", p, err)
		}
	}
	if err := d.Delete(ctx(t), dir+"/x"); err != nil {
		t.Fatalf("delete object: %v", err)
	}
	wantNotFound(t, "second delete", d.Delete(ctx(t), dir+"/x"))
	wantNotFound(t, "delete of a/b again", d.Delete(ctx(t), dir+"/a/b"))
}

func testCopy(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	for _, n := range []int64{0, 3, h.PartSize + 1} {
		b := randBytes(n)
		src, dst := fmt.Sprintf("%s/src%d", dir, n), fmt.Sprintf("%s/d/dst%d", dir, n)
		put(t, d, src, b)
		put(t, d, dst, []byte("old content to be replaced"))
		if err := d.Copy(ctx(t), src, dst); err != nil {
			t.Fatalf("copy: %v", err)
		}
		if got := read(t, d, dst, 0, -1); !bytes.Equal(got, b) {
			t.Errorf("copy of %d bytes: content differs (got %d)", n, len(got))
		}
		if got := read(t, d, src, 0, -1); !bytes.Equal(got, b) {
			t.Errorf("copy changed its source")
		}
	}
}

// testVersions: Stat and the streams of Reader (whole and ranged) report the same
// non-empty version, and the same object size, for one content, and every way of replacing the object (Put, Copy,
// Writer commit, even with the same size) gives a new one.
func testVersions(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	p := dir + "/obj"
	seen := map[string]string{}
	check := func(how string) {
		t.Helper()
		fi, err := d.Stat(ctx(t), p)
		if err != nil {
			t.Fatalf("%s: stat: %v", how, err)
		}
		if fi.Version == "" {
			t.Fatalf("%s: Stat reports no version", how)
		}
		if prev, ok := seen[fi.Version]; ok {
			t.Fatalf("%s: version %q already seen after %s", how, fi.Version, prev)
		}
		seen[fi.Version] = how
		for _, r := range [][2]int64{{0, -1}, {1, 2}, {3, -1}} {
			rc, err := d.Reader(ctx(t), p, r[0], r[1])
			if err != nil {
				t.Fatalf("%s: reader: %v", how, err)
			}
			v, size := driver.ReaderVersion(rc), driver.ReaderSize(rc)
			rc.Close()
			if v != fi.Version {
				t.Fatalf("%s: reader %v reports version %q, Stat %q", how, r, v, fi.Version)
			}
			if size != fi.Size {
				t.Fatalf("%s: reader %v reports object size %d, Stat %d", how, r, size, fi.Size)
			}
		}
	}
	put(t, d, p, []byte("version one"))
	check("put")
	put(t, d, p, []byte("version two"))
	check("put of the same size")
	put(t, d, dir+"/src", []byte("copied content"))
	if err := d.Copy(ctx(t), dir+"/src", p); err != nil {
		t.Fatal(err)
	}
	check("copy")
	w, err := d.Writer(ctx(t), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, []byte("committed content"), 5)
	if err := w.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	check("writer commit")
}

// writeAll writes b through w in pieces of the given size.
func writeAll(t *testing.T, w driver.Writer, b []byte, piece int) {
	t.Helper()
	for len(b) > 0 {
		n := min(piece, len(b))
		if m, err := w.Write(b[:n]); err != nil || m != n {
			t.Fatalf("write: %d, %v", m, err)
		}
		b = b[n:]
	}
}

// assertOnly checks that dir holds exactly the listed object names (no leftover parts).
func assertOnly(t *testing.T, d driver.Driver, dir string, want ...string) {
	t.Helper()
	l, err := d.List(ctx(t), dir, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names(l)) != fmt.Sprint(want) {
		t.Errorf("%s holds %v, want %v", dir, names(l), want)
	}
}

func testWriterSizes(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	ps := h.PartSize
	for _, n := range []int64{0, 1, ps - 1, ps, ps + 1, 2*ps + 17} {
		sub := fmt.Sprintf("%s/w%d", dir, n)
		p := sub + "/data"
		b := randBytes(n)
		w, err := d.Writer(ctx(t), p, nil)
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
		writeAll(t, w, b, 32<<10+7)
		if w.Size() != n {
			t.Errorf("size %d, want %d", w.Size(), n)
		}
		if err := w.Commit(ctx(t)); err != nil {
			t.Fatalf("commit %d bytes: %v", n, err)
		}
		fi, err := d.Stat(ctx(t), p)
		if err != nil || fi.Size != n {
			t.Fatalf("stat after commit of %d: %+v, %v", n, fi, err)
		}
		if got := read(t, d, p, 0, -1); !bytes.Equal(got, b) {
			t.Errorf("%d bytes: content differs", n)
		}
		assertOnly(t, d, sub, p)
		if _, err := w.Write([]byte("x")); err == nil {
			t.Errorf("write after commit succeeded")
		}
	}
}

// testWriterCommitTo: driver.CommitTo makes a session's bytes readable at another path,
// replacing what was there, for sessions fresh or resumed, smaller than a part or not.
// Writers that implement driver.CommitterTo leave nothing at their own path, and the
// session is gone afterwards (resuming its state is ErrNotFound).
func testWriterCommitTo(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	ps := h.PartSize
	for _, c := range []struct {
		n       int64
		resumed bool
	}{{0, false}, {1, false}, {ps - 1, true}, {ps + 1, false}, {2*ps + 17, true}} {
		t.Run(fmt.Sprintf("%d-resumed=%v", c.n, c.resumed), func(t *testing.T) {
			sub := fmt.Sprintf("%s/c%d", dir, c.n)
			src, dst := sub+"/upload/data", sub+"/blob/data"
			put(t, d, dst, []byte("old content to be replaced"))
			b := randBytes(c.n)
			w, err := d.Writer(ctx(t), src, nil)
			if err != nil {
				t.Fatal(err)
			}
			var st []byte
			if c.resumed {
				writeAll(t, w, b[:c.n/2], 1<<20)
				if st, err = w.State(ctx(t)); err != nil {
					t.Fatal(err)
				}
				if w, err = d.Writer(ctx(t), src, st); err != nil {
					t.Fatal(err)
				}
				writeAll(t, w, b[c.n/2:], 1<<20)
			} else {
				writeAll(t, w, b, 1<<20)
			}
			_, native := w.(driver.CommitterTo)
			version, err := driver.CommitTo(ctx(t), d, w, src, dst)
			if err != nil {
				t.Fatalf("commit to %s: %v", dst, err)
			}
			if got := read(t, d, dst, 0, -1); !bytes.Equal(got, b) {
				t.Errorf("%d bytes: content at the destination differs (got %d)", c.n, len(got))
			}
			if fi, err := d.Stat(ctx(t), dst); err != nil || (version != "" && fi.Version != version) {
				t.Errorf("CommitTo reported version %q, Stat says %q (%v)", version, fi.Version, err)
			}
			if _, ok := w.(driver.CommitterTo); ok && version == "" {
				t.Errorf("%T.CommitTo reported no version", w)
			}
			if native {
				_, err := d.Stat(ctx(t), src)
				wantNotFound(t, "stat of the writer's own path", err)
				assertOnly(t, d, sub+"/upload")
			}
			if st != nil {
				_, err := d.Writer(ctx(t), src, st)
				wantNotFound(t, "resume after CommitTo", err)
			}
			if _, err := w.Write([]byte("x")); err == nil {
				t.Errorf("write after CommitTo succeeded")
			}
		})
	}
	// At the writer's own path CommitTo is Commit, with the version reported.
	for _, n := range []int64{1, 2*ps + 17} {
		p := fmt.Sprintf("%s/own%d/data", dir, n)
		b := randBytes(n)
		w, err := d.Writer(ctx(t), p, nil)
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, w, b, 1<<20)
		version, err := driver.CommitTo(ctx(t), d, w, p, p)
		if err != nil {
			t.Fatalf("commit %d bytes to the writer's own path: %v", n, err)
		}
		if got := read(t, d, p, 0, -1); !bytes.Equal(got, b) {
			t.Errorf("%d bytes committed to the writer's own path: content differs (got %d)", n, len(got))
		}
		if fi, err := d.Stat(ctx(t), p); err != nil || (version != "" && fi.Version != version) {
			t.Errorf("own path: CommitTo reported version %q, Stat says %q (%v)", version, fi.Version, err)
		}
	}
	// An invalid destination is refused without ending the session.
	w, err := d.Writer(ctx(t), dir+"/bad/data", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := w.(driver.CommitterTo); ok {
		if _, err := c.CommitTo(ctx(t), "a//b"); !errors.Is(err, driver.ErrInvalidPath) {
			t.Errorf("CommitTo an invalid path: %v, want ErrInvalidPath", err)
		}
	}
	if err := w.Abort(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func testWriterInvisible(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	p := dir + "/obj"
	old := []byte("committed earlier")
	put(t, d, p, old)
	w, err := d.Writer(ctx(t), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, randBytes(h.PartSize+10), 1<<20)
	st, err := w.State(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, p, 0, -1); !bytes.Equal(got, old) {
		t.Errorf("uncommitted writer changed the object")
	}
	w, err = d.Writer(ctx(t), p, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, p, 0, -1); !bytes.Equal(got, old) {
		t.Errorf("aborted writer changed the object")
	}
}

// resumeWrite writes total bytes from gen in chunks, each chunk through a new Writer resumed
// from the previous State, and commits. It returns the sha256 of what was written.
func resumeWrite(t *testing.T, d driver.Driver, p string, total int64, chunks func(i int) int64, gen io.Reader) []byte {
	t.Helper()
	hash := sha256.New()
	var state []byte
	var written int64
	buf := make([]byte, 1<<20)
	for i := 0; written < total || i == 0; i++ {
		w, err := d.Writer(ctx(t), p, state)
		if err != nil {
			t.Fatalf("writer resume #%d at %d: %v", i, written, err)
		}
		if w.Size() != written {
			t.Fatalf("resumed writer size %d, want %d", w.Size(), written)
		}
		n := min(chunks(i), total-written)
		if _, err := io.CopyBuffer(w, io.TeeReader(io.LimitReader(gen, n), hash), buf); err != nil {
			t.Fatalf("write chunk %d: %v", i, err)
		}
		written += n
		if written == total {
			if err := w.Commit(ctx(t)); err != nil {
				t.Fatalf("commit: %v", err)
			}
			break
		}
		if state, err = w.State(ctx(t)); err != nil {
			t.Fatalf("state: %v", err)
		}
		if len(state) > 512 {
			t.Errorf("state of %d bytes exceeds 512", len(state))
		}
	}
	return hash.Sum(nil)
}

func hashObject(t *testing.T, d driver.Driver, p string) ([]byte, int64) {
	t.Helper()
	r, err := d.Reader(ctx(t), p, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil), n
}

// pseudo is a fast deterministic byte stream (not crypto).
type pseudo struct{ r *mrand.ChaCha8 }

func newPseudo() io.Reader {
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	return &pseudo{mrand.NewChaCha8(seed)}
}

func (p *pseudo) Read(b []byte) (int, error) { return p.r.Read(b) }

func testWriterResumeSmall(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	ps := h.PartSize
	sizes := []int64{1, 3, ps - 1, 2, ps + 1, ps, 1, 1 << 20}
	var total int64
	for _, s := range sizes {
		total += s
	}
	p := dir + "/small/data"
	want := resumeWrite(t, d, p, total, func(i int) int64 { return sizes[i%len(sizes)] }, newPseudo())
	got, n := hashObject(t, d, p)
	if n != total || !bytes.Equal(got, want) {
		t.Errorf("resumed write: %d bytes, hash match %v; want %d", n, bytes.Equal(got, want), total)
	}
	assertOnly(t, d, dir+"/small", p)
}

func testWriterResumeLarge(t *testing.T, h *Harness, dir string) {
	if testing.Short() {
		t.Skip("large write skipped in -short mode")
	}
	d := h.Driver
	p := dir + "/large/data"
	want := resumeWrite(t, d, p, h.LargeSize, func(int) int64 { return 7 << 20 }, newPseudo())
	got, n := hashObject(t, d, p)
	if n != h.LargeSize || !bytes.Equal(got, want) {
		t.Errorf("large resumed write: %d bytes, hash match %v", n, bytes.Equal(got, want))
	}
	// Ranged read across a part boundary of the large object.
	r, err := d.Reader(ctx(t), p, h.PartSize-5, 10)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil || len(b) != 10 {
		t.Errorf("ranged read of large object: %d bytes, %v", len(b), err)
	}
	assertOnly(t, d, dir+"/large", p)
}

func testWriterStale(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	p := dir + "/stale/data"
	w, err := d.Writer(ctx(t), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := randBytes(1000)
	writeAll(t, w, first, 1000)
	s1, err := w.State(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	w, err = d.Writer(ctx(t), p, s1)
	if err != nil {
		t.Fatal(err)
	}
	second := randBytes(h.PartSize + 500)
	writeAll(t, w, second, 1<<20)
	s2, err := w.State(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	// Replaying s1 must be refused and must not disturb the session at s2.
	if w, err := d.Writer(ctx(t), p, s1); !errors.Is(err, driver.ErrPreconditionFailed) {
		t.Errorf("resume from stale state: want ErrPreconditionFailed, got %v", err)
		if err == nil {
			_ = w.Abort(ctx(t))
			return
		}
	}
	w, err = d.Writer(ctx(t), p, s2)
	if err != nil {
		t.Fatalf("resume from current state after a stale replay: %v", err)
	}
	if err := w.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, p, 0, -1); !bytes.Equal(got, append(first, second...)) {
		t.Errorf("content after stale replay differs (%d bytes)", len(got))
	}
}

func testWriterAbort(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	for _, resumed := range []bool{false, true} {
		sub := fmt.Sprintf("%s/abort-%v", dir, resumed)
		p := sub + "/data"
		w, err := d.Writer(ctx(t), p, nil)
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, w, randBytes(h.PartSize+3), 1<<20)
		if resumed {
			st, err := w.State(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if w, err = d.Writer(ctx(t), p, st); err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, randBytes(10), 10)
		}
		if err := w.Abort(ctx(t)); err != nil {
			t.Fatalf("abort: %v", err)
		}
		_, err = d.Stat(ctx(t), p)
		wantNotFound(t, "stat after abort", err)
		assertOnly(t, d, sub)
	}
}

func testWriterGarbage(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	for _, st := range [][]byte{{}, []byte("garbage"), bytes.Repeat([]byte{0xff}, 64)} {
		w, err := d.Writer(ctx(t), dir+"/g/data", st)
		if err == nil {
			_ = w.Abort(ctx(t))
			t.Errorf("Writer accepted garbage state %q", st)
		}
	}
}

func testConcurrentWriters(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	const n = 6
	size := 2*h.PartSize + 123
	var wg sync.WaitGroup
	sums := make([][]byte, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := fmt.Sprintf("%s/c%d/data", dir, i)
			w, err := d.Writer(ctx(t), p, nil)
			if err != nil {
				errs[i] = err
				return
			}
			hash := sha256.New()
			if _, err := io.Copy(w, io.TeeReader(io.LimitReader(newPseudo(), size), hash)); err != nil {
				errs[i] = err
				return
			}
			sums[i] = hash.Sum(nil)
			errs[i] = w.Commit(ctx(t))
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		got, sz := hashObject(t, d, fmt.Sprintf("%s/c%d/data", dir, i))
		if sz != size || !bytes.Equal(got, sums[i]) {
			t.Errorf("writer %d: content differs", i)
		}
	}
}

func testConcurrentPut(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	p := dir + "/same"
	const n = 8
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		bodies[i] = bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Put(ctx(t), p, bytes.NewReader(bodies[i]), int64(len(bodies[i]))); err != nil {
				t.Errorf("put %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	got := read(t, d, p, 0, -1)
	for _, b := range bodies {
		if bytes.Equal(got, b) {
			return
		}
	}
	t.Errorf("concurrent puts left a mixed object of %d bytes", len(got))
}

func testContextCanceled(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	put(t, d, dir+"/obj", []byte("x"))
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Stat(c, dir+"/obj"); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat with cancelled ctx: want context.Canceled, got %v", err)
	}
	if _, err := d.List(c, dir, "", 0); !errors.Is(err, context.Canceled) {
		t.Errorf("List with cancelled ctx: want context.Canceled, got %v", err)
	}
	if err := d.Put(c, dir+"/obj2", bytes.NewReader([]byte("y")), 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with cancelled ctx: want context.Canceled, got %v", err)
	}
	if _, err := d.Stat(ctx(t), dir+"/obj2"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("cancelled Put left an object: %v", err)
	}
}

func testURL(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	p := dir + "/signed"
	b := randBytes(1000)
	put(t, d, p, b)
	u, err := d.URL(ctx(t), p, time.Minute)
	if errors.Is(err, driver.ErrUnsupported) {
		return
	}
	if err != nil {
		t.Fatalf("URL: %v", err)
	}
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET signed URL: %v", err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(got, b) {
		t.Errorf("GET signed URL: status %d, %d bytes", resp.StatusCode, len(got))
	}
}

// testWriterUnacknowledged simulates a PATCH that fails mid-stream: a resumed writer writes
// more than a part and its context is cancelled before State. Resuming again from the last
// acknowledged state must work and the lost bytes must not appear in the object.
func testWriterUnacknowledged(t *testing.T, h *Harness, dir string) {
	d := h.Driver
	p := dir + "/unack/data"
	w, err := d.Writer(ctx(t), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := randBytes(h.PartSize/2 + 7)
	writeAll(t, w, first, 1<<20)
	s1, err := w.State(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	failed, cancel := context.WithCancel(context.Background())
	w, err = d.Writer(failed, p, s1)
	if err != nil {
		t.Fatal(err)
	}
	lost := bytes.Repeat([]byte{0xEE}, int(h.PartSize+h.PartSize/2))
	for b := lost; len(b) > 0; {
		n := min(len(b), 1<<20)
		if _, err := w.Write(b[:n]); err != nil {
			break // a write may already report the coming failure
		}
		b = b[n:]
	}
	cancel()
	time.Sleep(200 * time.Millisecond) // let background uploads notice the cancellation
	w, err = d.Writer(ctx(t), p, s1)
	if err != nil {
		t.Fatalf("resume from the last acknowledged state after a failed request: %v", err)
	}
	if w.Size() != int64(len(first)) {
		t.Errorf("resumed size %d, want %d", w.Size(), len(first))
	}
	rest := randBytes(h.PartSize + 11)
	writeAll(t, w, rest, 1<<20)
	if err := w.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, p, 0, -1); !bytes.Equal(got, append(first, rest...)) {
		t.Errorf("object after a failed request and a retry differs (%d bytes)", len(got))
	}
	assertOnly(t, d, dir+"/unack", p)
}

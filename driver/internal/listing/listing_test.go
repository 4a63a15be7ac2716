package listing

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/registryd/registryd/driver"
)

func TestReleased(t *testing.T) {
	for _, c := range []struct {
		name, prefix, cursor string
		want                 bool
	}{
		{"d/abc", "d/", "d/abc", true},
		{"d/c-d", "d/", "d/c.f", false}, // "d/c/" may still come
		{"d/c-d", "d/", "d/c/", true},
		{"d/c.f", "d/", "d/c0", true},
		{"d/a.b-c", "d/", "d/a.b/", false}, // "d/a/" may still come
		{"d/a.b-c", "d/", "d/a/", true},
		{"d/-x", "d/", "d/-x", true}, // a name starting with '-' has no shorter directory
		{"x-y", "", "x/", true},
		{"x-y", "", "x-z", false},
		{"r/d/v1.0-rc", "r/d/", "r/d/v1.0-rc", false}, // "v1/" or "v1.0/" may follow
	} {
		if got := released(c.name, c.prefix, c.cursor); got != c.want {
			t.Errorf("released(%q, %q, %q) = %v", c.name, c.prefix, c.cursor, got)
		}
	}
}

// store lists names (objects, and directories ending in "/") under prefix in name order,
// pageSize per page, as an object store does.
func pages(names []string, pageSize int) [][]string {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	var out [][]string
	for len(sorted) > 0 {
		n := min(pageSize, len(sorted))
		out = append(out, sorted[:n])
		sorted = sorted[n:]
	}
	return out
}

// TestMerger lists directories whose name order and path order differ, in pages of every
// size, with every limit and start, and compares with the path order.
func TestMerger(t *testing.T) {
	for _, names := range [][]string{
		{"a", "b", "c"},
		{"c-1", "c-2", "c-3", "c/"},
		{"a", "b", "c.x", "c/", "z-1"},
		{"a", "b", "v1.0-rc", "v1.0/", "v1/", "v2"},
		{"x-y", "x.z", "x/", "x0", "-a", "a.b-c", "a.b/", "a/"},
		{"b", "b/", "b-c", "b.d/"}, // an object and a directory of the same path: both listed
	} {
		var want []string
		for _, n := range names {
			want = append(want, strings.TrimSuffix(n, "/"))
		}
		sort.Strings(want)
		for pageSize := 1; pageSize <= len(names); pageSize++ {
			for limit := 0; limit <= len(names); limit++ {
				for _, after := range append([]string{""}, want...) {
					m := New("d/", pathOf(after), limit)
					cursor := ""
					for _, page := range pages(names, pageSize) {
						for _, n := range page {
							key := "d/" + n
							cursor = max(cursor, key)
							m.Add(key, driver.Info{Path: pathOf(strings.TrimSuffix(n, "/")), IsDir: strings.HasSuffix(n, "/")})
						}
						if m.Final(cursor) {
							break
						}
					}
					var exp []string
					for _, w := range want {
						if after == "" || w > after {
							exp = append(exp, pathOf(w))
						}
					}
					if limit > 0 && len(exp) > limit {
						exp = exp[:limit]
					}
					var got []string
					for _, e := range m.Result() {
						got = append(got, e.Path)
					}
					if fmt.Sprint(got) != fmt.Sprint(exp) {
						t.Errorf("%v in pages of %d, limit %d, after %q: got %v, want %v", names, pageSize, limit, after, got, exp)
					}
				}
			}
		}
	}
}

func pathOf(name string) string {
	if name == "" {
		return ""
	}
	return "x/" + name
}

func TestResultNeverNil(t *testing.T) {
	if r := New("", "", 3).Result(); r == nil || len(r) != 0 {
		t.Errorf("empty listing: %#v", r)
	}
}

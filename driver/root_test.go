package driver

import (
	"errors"
	"testing"
)

func TestRoot(t *testing.T) {
	for _, tc := range []struct {
		dir                  string
		key, prefix, top, of string
	}{
		{"", "a/b", "a/", "", "a/b"},
		{"/", "a/b", "a/", "", "a/b"},
		{"/reg/x/", "reg/x/a/b", "reg/x/a/", "reg/x/", "a/b"},
	} {
		r, err := NewRoot(tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Key("a/b"); got != tc.key {
			t.Errorf("%q Key = %q, want %q", tc.dir, got, tc.key)
		}
		if got := r.DirPrefix("a"); got != tc.prefix {
			t.Errorf("%q DirPrefix = %q, want %q", tc.dir, got, tc.prefix)
		}
		if got := r.DirPrefix(""); got != tc.top {
			t.Errorf("%q DirPrefix(root) = %q, want %q", tc.dir, got, tc.top)
		}
		if got := r.PathOf(r.Key("a/b")); got != tc.of {
			t.Errorf("%q PathOf = %q, want %q", tc.dir, got, tc.of)
		}
	}
	if _, err := NewRoot("a/../b"); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("NewRoot(a/../b): %v", err)
	}
}

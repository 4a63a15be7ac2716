package auth

import "testing"

func TestMatchGlob(t *testing.T) {
	for _, c := range []struct {
		glob, name string
		want       bool
	}{
		{"team/app", "team/app", true},
		{"team/app", "team/app2", false},
		{"team/*", "team/app", true},
		{"team/*", "team/a/b", false},
		{"team/*", "team/", true},
		{"team/**", "team/a/b/c", true},
		{"team/**", "teamx/a", false},
		{"**", "anything/at/all", true},
		{"*/app", "x/app", true},
		{"*/app", "x/y/app", false},
		{"**/app", "x/y/app", true},
		{"**/app", "x/y/apps", false},
		{"team/a?p", "team/app", true},
		{"team/a?p", "team/a/p", false},
		{"pub-*-img", "pub-x-img", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"", "", true},
		{"x", "", false},
	} {
		if got := matchGlob(compileGlob(c.glob), c.name); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.glob, c.name, got, c.want)
		}
	}
}

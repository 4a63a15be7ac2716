package storage

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestRetentionRules(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	d1, d2, d3 := digest.FromString("1"), digest.FromString("2"), digest.FromString("3")
	tags := []retainedTag{
		{"v1.0", d1, now.Add(-90 * day)},
		{"v1.1", d2, now.Add(-60 * day)},
		{"dev-a", d3, now.Add(-30 * day)},
		{"dev-b", d3, now.Add(-10 * day)},
		{"latest", d2, now.Add(-1 * day)},
		{"stable", d1, now.Add(-100 * day)},
	}
	tests := []struct {
		name string
		rule RetentionRule
		want []string
	}{
		{"keep last 2", RetentionRule{KeepLast: 2}, []string{"dev-a", "stable", "v1.0", "v1.1"}},
		{"older than 45 days", RetentionRule{OlderThan: 45 * day}, []string{"stable", "v1.0", "v1.1"}},
		{"older than, keep last 5", RetentionRule{OlderThan: 45 * day, KeepLast: 5}, []string{"stable"}},
		{"keep tags matching", RetentionRule{KeepLast: 1, KeepTags: `v[0-9.]+`}, []string{"dev-a", "dev-b", "stable"}},
		{"keeptags matches the whole tag", RetentionRule{KeepLast: 1, KeepTags: `v1`}, []string{"dev-a", "dev-b", "stable", "v1.0", "v1.1"}},
		{"pinned digest keeps every tag of it", RetentionRule{KeepLast: 1, Pinned: []string{d1.String()}}, []string{"dev-a", "dev-b", "v1.1"}},
		{"pinned tag pins its digest", RetentionRule{KeepLast: 1, Pinned: []string{"dev-.*"}}, []string{"stable", "v1.0", "v1.1"}},
		{"pinned stable pins v1.0 too", RetentionRule{OlderThan: 45 * day, Pinned: []string{"stable"}}, []string{"v1.1"}},
		{"keep more than there are", RetentionRule{KeepLast: 10}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rule.Repository = "**"
			c, err := compileRule(tt.rule)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.selectTags(tags, now); !slices.Equal(got, tt.want) {
				t.Fatalf("deletes %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRetentionRuleErrors(t *testing.T) {
	for _, r := range []RetentionRule{
		{Repository: "", KeepLast: 1},
		{Repository: "a"},
		{Repository: "a", KeepLast: -1},
		{Repository: "a", KeepLast: 1, KeepTags: "("},
		{Repository: "a", KeepLast: 1, Pinned: []string{"sha256:nothex"}},
		{Repository: "a", KeepLast: 1, Pinned: []string{"[a-"}},
	} {
		if err := CheckRetentionRule(r); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}

func TestRepositoryGlob(t *testing.T) {
	for _, tt := range []struct {
		glob, name string
		want       bool
	}{
		{"team/*", "team/app", true},
		{"team/*", "team/app/sub", false},
		{"team/**", "team/app/sub", true},
		{"app?", "app1", true},
		{"app?", "app/", false},
		{"a.b", "axb", false},
		{"**", "anything/at/all", true},
	} {
		if got := globRegexp(tt.glob).MatchString(tt.name); got != tt.want {
			t.Errorf("%q ~ %q = %v", tt.glob, tt.name, got)
		}
	}
}

// TestGCRetention: retention deletes the tags its rule selects in the repositories the
// glob matches, first rule wins; the manifests it untagged are swept in the same run,
// unless another tag still holds them.
func TestGCRetention(t *testing.T) {
	f := newFixture(t)
	old := f.image("team/app", "old", nil, "c1", "l1")
	f.image("team/app", "mid", nil, "c2", "l2")
	nw := f.image("team/app", "new", nil, "c3", "l3")
	time.Sleep(2 * time.Millisecond)
	if _, err := f.r.PutManifest(context.Background(), "team/app", "alias", f.bodies[nw], "", nil); err != nil {
		t.Fatal(err)
	}
	f.image("other", "old", nil, "c4", "l4")
	opts := testGCOptions()
	opts.Retention = []RetentionRule{{Repository: "team/*", KeepLast: 2}, {Repository: "**", KeepLast: 100}}
	rep := f.gc(opts)
	tags, _, err := f.r.Tags(context.Background(), "team/app", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tags, []string{"alias", "new"}) {
		t.Fatalf("tags left %v", tags)
	}
	if rep.Deleted[GCKindTag] != 2 || f.hasManifest("team/app", old) {
		t.Fatalf("deleted %v", rep.Deleted)
	}
	f.checkIntegrity()
}

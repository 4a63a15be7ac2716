package config

import (
	"strings"
	"testing"
	"time"
)

func TestGCDefaultsAndKeys(t *testing.T) {
	c, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g := c.Storage.GC; g.Enabled || g.Interval != 24*time.Hour || g.GracePeriod != 24*time.Hour || !*g.Untagged ||
		g.UntaggedGracePeriod != 24*time.Hour || g.DryRun || g.Announce != time.Minute {
		t.Fatalf("defaults: %+v", g)
	}
	yml := `
storage:
  gc:
    enabled: true
    interval: 10m
    graceperiod: 2h
    untagged: false
    dryrun: true
    announce: 5s
    retention:
      - repository: "team/**"
        keeplast: 5
        keeptags: "v[0-9]+"
        olderthan: 720h
        pinned: ["sha256:4355a46b19d348dc2f57c046f8ef63d4538ebb936000f3c9ee954a27460dd865", "release-.*"]
`
	c, err = Load(strings.NewReader(yml), []string{"REGISTRY_STORAGE_GC_INTERVAL=5m"})
	if err != nil {
		t.Fatal(err)
	}
	g := c.Storage.GC
	if !g.Enabled || g.Interval != 5*time.Minute || g.GracePeriod != 2*time.Hour || *g.Untagged || g.UntaggedGracePeriod != 2*time.Hour ||
		!g.DryRun || g.Announce != 5*time.Second || len(g.Retention) != 1 || g.Retention[0].OlderThan != 720*time.Hour || len(g.Retention[0].Pinned) != 2 {
		t.Fatalf("loaded: %+v", g)
	}
}

func TestGCValidation(t *testing.T) {
	for _, tc := range []struct{ yml, key string }{
		{"storage: {gc: {interval: -1s}}", "storage.gc.interval"},
		{"storage: {gc: {graceperiod: -1h}}", "storage.gc.graceperiod"},
		{"storage: {gc: {announce: -1s}}", "storage.gc.announce"},
		{"storage: {gc: {retention: [{keeplast: 1}]}}", "storage.gc.retention[0].repository"},
		{"storage: {gc: {retention: [{repository: a}]}}", "storage.gc.retention[0]"},
		{"storage: {gc: {retention: [{repository: a, keeplast: 1, keeptags: '('}]}}", "storage.gc.retention[0].keeptags"},
		{"storage: {gc: {retention: [{repository: a, keeplast: 1, pinned: ['sha256:xyz']}]}}", "storage.gc.retention[0].pinned[0]"},
		{"storage: {gc: {retention: [{repository: a, keeplast: -2}]}}", "storage.gc.retention[0].keeplast"},
	} {
		_, err := Load(strings.NewReader(tc.yml), nil)
		found := false
		for _, e := range Errors(err) {
			found = found || e.Key == tc.key
		}
		if !found {
			t.Errorf("%s: error %v does not name %s", tc.yml, err, tc.key)
		}
	}
}

package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// GC configures online garbage collection (storage.gc): every Interval one replica (the
// one that takes the lease in the bucket) deletes untagged manifests, unreferenced layer
// links and unreferenced blobs older than GracePeriod, after applying the Retention
// rules. Any replica may run it; the others skip that run.
type GC struct {
	// Enabled runs garbage collection in the background of serve (default false).
	Enabled bool `yaml:"enabled"`
	// Interval is the time between runs (default 24h); the first runs within a minute of
	// start-up (within Interval, when that is shorter), at a random moment.
	Interval time.Duration `yaml:"interval"`
	// GracePeriod: a blob, layer link or manifest younger than this is never deleted
	// (default 24h). It covers an upload that is not yet referenced by a manifest.
	GracePeriod time.Duration `yaml:"graceperiod"`
	// Untagged also sweeps manifests no tag reaches (default true).
	Untagged *bool `yaml:"untagged"`
	// UntaggedGracePeriod: an untagged manifest younger than this is kept (default
	// GracePeriod), so index children pushed before their index and referrers pushed
	// before their subject survive.
	UntaggedGracePeriod time.Duration `yaml:"untaggedgraceperiod"`
	// DryRun computes and writes the plan (docker/registry/v2/_gc/plan.json) and logs
	// its summary, deleting nothing.
	DryRun bool `yaml:"dryrun"`
	// Announce is how long the first run on a bucket waits, after announcing itself under
	// docker/registry/v2/_gc/, before it deletes anything (default 1m): replicas that
	// never saw the bucket collected skip the push protection against a concurrent
	// collector, and check for the announcement every Announce/4. Every replica and every
	// `registryd gc` sharing the bucket must use the same value.
	Announce time.Duration `yaml:"announce"`
	// Retention lists the tag retention rules, applied as the first phase of a run; the
	// first rule whose Repository matches a repository applies to it.
	Retention []RetentionRule `yaml:"retention"`
}

// RetentionRule selects tags to delete in the repositories matching Repository (see
// storage.RetentionRule for the exact semantics).
type RetentionRule struct {
	// Repository is a glob: "*" within one path component, "**" across components.
	Repository string `yaml:"repository"`
	// KeepLast keeps the newest KeepLast tags, by the time they were last pushed.
	KeepLast int `yaml:"keeplast"`
	// KeepTags keeps tags the regular expression matches in whole.
	KeepTags string `yaml:"keeptags"`
	// OlderThan deletes tags last pushed longer ago than this; without it, the tags
	// beyond KeepLast are deleted.
	OlderThan time.Duration `yaml:"olderthan"`
	// Pinned lists manifest digests and tag regular expressions whose manifests keep
	// every tag.
	Pinned []string `yaml:"pinned"`
}

func (g *GC) applyDefaults() {
	if g.Interval == 0 {
		g.Interval = 24 * time.Hour
	}
	if g.GracePeriod == 0 {
		g.GracePeriod = 24 * time.Hour
	}
	if g.Untagged == nil {
		on := true
		g.Untagged = &on
	}
	if g.UntaggedGracePeriod == 0 {
		g.UntaggedGracePeriod = g.GracePeriod
	}
	if g.Announce == 0 {
		g.Announce = time.Minute
	}
}

// validate checks storage.gc, naming the key at fault.
func (g *GC) validate() error {
	v := &validator{}
	v.positive("storage.gc.interval", g.Interval)
	v.positive("storage.gc.graceperiod", g.GracePeriod)
	v.positive("storage.gc.untaggedgraceperiod", g.UntaggedGracePeriod)
	v.positive("storage.gc.announce", g.Announce)
	for i, r := range g.Retention {
		key := fmt.Sprintf("storage.gc.retention[%d]", i)
		if r.Repository == "" {
			v.errorf(key+".repository", "required")
		} else if strings.Contains(r.Repository, "***") {
			v.errorf(key+".repository", "%q: use * or **", r.Repository)
		}
		if r.KeepLast < 0 {
			v.errorf(key+".keeplast", "must not be negative, got %d", r.KeepLast)
		}
		v.notNegative(key+".olderthan", r.OlderThan)
		if r.KeepLast == 0 && r.OlderThan == 0 {
			v.errorf(key, "set keeplast or olderthan: the rule deletes nothing otherwise")
		}
		if r.KeepTags != "" {
			if _, err := regexp.Compile(`^(?:` + r.KeepTags + `)$`); err != nil {
				v.errorf(key+".keeptags", "not a regular expression: %v", err)
			}
		}
		for j, p := range r.Pinned {
			pk := fmt.Sprintf("%s.pinned[%d]", key, j)
			if strings.HasPrefix(p, "sha") && strings.Contains(p, ":") {
				if _, err := digest.Parse(p); err != nil {
					v.errorf(pk, "not a valid digest: %v", err)
				}
				continue
			}
			if _, err := regexp.Compile(`^(?:` + p + `)$`); err != nil {
				v.errorf(pk, "neither a digest nor a tag regular expression: %v", err)
			}
		}
	}
	return v.err()
}

package storage

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
)

// RetentionRule selects tags of the repositories matching Repository for deletion, as
// the first phase of a garbage collection run. The first rule whose Repository matches a
// repository applies to it; repositories no rule matches keep every tag.
//
// A tag is deleted when it is older than OlderThan (by its current link's modification
// time, the time of its last push) or, without OlderThan, when it is not among the
// KeepLast newest; and it is kept whatever its age when it is among the KeepLast newest,
// matches KeepTags, or is pinned: it matches a pattern of Pinned, or its manifest's digest
// is listed in Pinned or is the digest of a tag matching a pattern of Pinned.
type RetentionRule struct {
	// Repository is a glob: "*" matches within one path component, "**" across
	// components, "?" one character other than "/".
	Repository string
	// KeepLast keeps the newest KeepLast tags (0: no such rule).
	KeepLast int
	// KeepTags keeps the tags the regular expression matches in whole ("" : none).
	KeepTags string
	// OlderThan deletes tags older than this (0: no age rule).
	OlderThan time.Duration
	// Pinned lists manifest digests ("sha256:...") and tag regular expressions (matched
	// in whole) whose manifests are never untagged.
	Pinned []string
}

// compiledRule is a RetentionRule ready to match.
type compiledRule struct {
	RetentionRule
	repo       *regexp.Regexp
	keep       *regexp.Regexp
	pinTags    []*regexp.Regexp
	pinDigests map[digest.Digest]bool
}

// CheckRetentionRule returns an error describing what is wrong with the rule.
func CheckRetentionRule(rule RetentionRule) error {
	_, err := compileRule(rule)
	return err
}

func compileRule(rule RetentionRule) (*compiledRule, error) {
	c := &compiledRule{RetentionRule: rule, pinDigests: map[digest.Digest]bool{}}
	if rule.Repository == "" {
		return nil, errors.New("repository: required")
	}
	c.repo = globRegexp(rule.Repository)
	if rule.KeepLast < 0 || rule.OlderThan < 0 {
		return nil, errors.New("keeplast and olderthan must not be negative")
	}
	if rule.KeepLast == 0 && rule.OlderThan == 0 {
		return nil, errors.New("set keeplast or olderthan: the rule deletes nothing otherwise")
	}
	var err error
	if rule.KeepTags != "" {
		if c.keep, err = regexp.Compile(`^(?:` + rule.KeepTags + `)$`); err != nil {
			return nil, fmt.Errorf("keeptags: %w", err)
		}
	}
	for _, p := range rule.Pinned {
		if d, err := digest.Parse(p); err == nil {
			c.pinDigests[d] = true
			continue
		}
		if strings.Contains(p, ":") && strings.HasPrefix(p, "sha") {
			return nil, fmt.Errorf("pinned: %q is not a valid digest", p)
		}
		re, err := regexp.Compile(`^(?:` + p + `)$`)
		if err != nil {
			return nil, fmt.Errorf("pinned: %w", err)
		}
		c.pinTags = append(c.pinTags, re)
	}
	return c, nil
}

// globRegexp turns a repository glob into an anchored regular expression.
func globRegexp(glob string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(glob); i++ {
		switch {
		case strings.HasPrefix(glob[i:], "**"):
			b.WriteString(".*")
			i++
		case glob[i] == '*':
			b.WriteString("[^/]*")
		case glob[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// retainedTag is a tag as retention sees it.
type retainedTag struct {
	name    string
	digest  digest.Digest
	modTime time.Time
}

// selectTags returns the names of the tags the rule deletes at time now.
func (c *compiledRule) selectTags(tags []retainedTag, now time.Time) []string {
	sorted := append([]retainedTag(nil), tags...)
	sort.Slice(sorted, func(i, j int) bool {
		if !sorted[i].modTime.Equal(sorted[j].modTime) {
			return sorted[i].modTime.After(sorted[j].modTime)
		}
		return sorted[i].name < sorted[j].name
	})
	pinned := map[digest.Digest]bool{}
	for d := range c.pinDigests {
		pinned[d] = true
	}
	for _, t := range sorted {
		for _, re := range c.pinTags {
			if re.MatchString(t.name) {
				pinned[t.digest] = true
			}
		}
	}
	var out []string
	for i, t := range sorted {
		switch {
		case i < c.KeepLast:
		case c.keep != nil && c.keep.MatchString(t.name):
		case pinned[t.digest]:
		case c.OlderThan > 0 && !t.modTime.Before(now.Add(-c.OlderThan)):
		default:
			out = append(out, t.name)
		}
	}
	sort.Strings(out)
	return out
}

// retentionDeletes reports whether the dry run's retention deletes the tag (mark then
// treats it as gone). In a real run the deleted tags are gone from the listing.
func (g *gcRun) retentionDeletes(repo, tag string) bool {
	return g.opts.DryRun && g.retained[repo][tag]
}

// retention is the first phase of a run: it selects the tags the rules delete and, in a
// real run, deletes each after re-reading it (a tag pushed again since it was read is
// kept).
func (g *gcRun) retention(ctx context.Context) error {
	if len(g.opts.Retention) == 0 {
		return nil
	}
	rules := make([]*compiledRule, len(g.opts.Retention))
	for i, r := range g.opts.Retention {
		c, err := compileRule(r)
		if err != nil {
			return fmt.Errorf("rule %d: %w", i, err)
		}
		rules[i] = c
	}
	repos, err := g.repositories(ctx)
	if err != nil {
		return err
	}
	g.retained = map[string]map[string]bool{}
	type doomed struct {
		item GCItem
		t    retainedTag
	}
	var all []doomed
	for _, repo := range repos {
		var rule *compiledRule
		for _, c := range rules {
			if c.repo.MatchString(repo) {
				rule = c
				break
			}
		}
		if rule == nil {
			continue
		}
		tags, err := g.readTags(ctx, repo)
		if err != nil {
			return fmt.Errorf("repository %s: %w", repo, err)
		}
		byName := map[string]retainedTag{}
		for _, t := range tags {
			byName[t.name] = t
		}
		for _, name := range rule.selectTags(tags, g.t0) {
			if !g.allowed(tagDir(repo, name)) {
				continue
			}
			t := byName[name]
			if g.retained[repo] == nil {
				g.retained[repo] = map[string]bool{}
			}
			g.retained[repo][name] = true
			all = append(all, doomed{GCItem{Kind: GCKindTag, Repository: repo, Tag: name, Digest: t.digest, Path: tagDir(repo, name)}, t})
		}
	}
	for _, d := range all {
		g.tags = append(g.tags, d.item)
	}
	if g.opts.DryRun {
		g.sweepCalls += 3 * int64(len(all))
		return nil
	}
	for _, d := range all {
		if err := g.deleteTag(ctx, d.item, d.t); err != nil {
			return err
		}
	}
	return nil
}

// readTags reads every tag of a repository with its manifest and last push time.
func (g *gcRun) readTags(ctx context.Context, repo string) ([]retainedTag, error) {
	names, err := g.r.subdirs(ctx, tagsDir(repo))
	if err != nil {
		return nil, err
	}
	out := make([]retainedTag, len(names))
	found := make([]bool, len(names))
	if err := parallel(len(names), func(i int) error {
		p := tagCurrentPath(repo, names[i])
		fi, err := g.c.Stat(ctx, p)
		if errors.Is(err, driver.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stat tag %s: %w", names[i], err)
		}
		d, err := g.r.readLink(ctx, p)
		if errors.Is(err, driver.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tag %s: %w", names[i], err)
		}
		out[i], found[i] = retainedTag{name: names[i], digest: d, modTime: fi.ModTime}, true
		return nil
	}); err != nil {
		return nil, err
	}
	var tags []retainedTag
	for i, t := range out {
		if found[i] {
			tags = append(tags, t)
		}
	}
	return tags, nil
}

// deleteTag deletes a tag retention selected if it still points at the same manifest
// and was not pushed again since it was read.
func (g *gcRun) deleteTag(ctx context.Context, it GCItem, t retainedTag) error {
	p := tagCurrentPath(it.Repository, it.Tag)
	fi, err := g.c.Stat(ctx, p)
	if errors.Is(err, driver.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat tag %s: %w", it.Tag, err)
	}
	d, err := g.r.readLink(ctx, p)
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		return fmt.Errorf("read tag %s: %w", it.Tag, err)
	}
	if d != t.digest || !fi.ModTime.Equal(t.modTime) {
		g.report.Skipped++
		return nil
	}
	if f := g.opts.Fence; f != nil {
		if err := f(); err != nil {
			return fmt.Errorf("gc fence: %w", err)
		}
	}
	if err := g.c.Delete(ctx, it.Path); err != nil && !errors.Is(err, driver.ErrNotFound) {
		return fmt.Errorf("delete tag %s: %w", it.Tag, err)
	}
	g.report.DeletedItems = append(g.report.DeletedItems, it)
	g.report.Deleted[it.Kind]++
	return nil
}

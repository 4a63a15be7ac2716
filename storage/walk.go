package storage

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"path"
	"strings"
	"sync"

	"github.com/registryd/registryd/driver"
)

// Walk tuning. A page is what one List call asks for; the window is how many of a
// directory's next subdirectories have their first page requested ahead of the walk;
// walkParallel bounds the List calls in flight for one walk.
const (
	walkPage     = 1000
	walkWindow   = 32
	walkParallel = 16
)

// Repositories yields the names of the repositories in byte order of the full name
// ("a/b" < "a/b-x" < "a/b/c" < "a/b0"), starting strictly after `after` ("" for the
// first). A directory holding _manifests, _layers or _uploads is a repository; any other
// directory is a name component. The walk lists only what follows `after` at every level
// of the nested tree: the cost of reading the first k names is about k List calls (one
// per repository directory, which both tells whether it is a repository and lists its
// children), made up to 16 at a time, with the subdirectories ahead of the consumer and
// the next page of a large directory requested in advance. The backend sees the calls
// for at most a window of names past the last one consumed.
//
// A failure is yielded once as ("", err), and the walk ends. When the consumer stops, the
// calls in flight are cancelled and waited for before the iterator returns: nothing keeps
// running behind it.
func (r *Registry) Repositories(ctx context.Context, after string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		w := &walker{r: r, ctx: ctx, sem: make(chan struct{}, walkParallel)}
		defer func() {
			cancel()
			w.wg.Wait()
		}()
		emit := func(name string) bool { return yield(name, nil) }
		if err := w.walkDir("", after, nil, emit); err != nil && !errors.Is(err, errStopped) {
			yield("", err)
		}
	}
}

// errStopped ends a walk whose consumer stopped; it never leaves Repositories.
var errStopped = errors.New("walk stopped by its consumer")

// walker is the state of one Repositories walk.
type walker struct {
	r   *Registry
	ctx context.Context
	sem chan struct{}
	wg  sync.WaitGroup
}

// listing is a List call made in the background; wait returns its result.
type listing struct {
	done chan struct{}
	l    []driver.Info
	err  error
}

func (l *listing) wait() ([]driver.Info, error) {
	<-l.done
	return l.l, l.err
}

// list starts List(dir, after, limit), at most walkParallel of them at a time.
func (w *walker) list(dir, after string, limit int) *listing {
	l := &listing{done: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(l.done)
		select {
		case w.sem <- struct{}{}:
		case <-w.ctx.Done():
			l.err = w.ctx.Err()
			return
		}
		defer func() { <-w.sem }()
		l.l, l.err = w.r.d.List(w.ctx, dir, after, limit)
		if l.err != nil {
			l.err = fmt.Errorf("list %s: %w", dir, l.err)
		}
	}()
	return l
}

// before returns a List bound that lets through exactly the names >= s of a directory:
// the greatest string sorting before s that no valid path component extends (the last
// byte lowered by one, then '~', above every path character).
func before(s string) string {
	return s[:len(s)-1] + string(s[len(s)-1]-1) + "~"
}

// child is a subdirectory of the directory being walked.
type child struct {
	name string // the directory's name (one component)
	// self: the directory itself is a repository candidate (its full name sorts after the
	// bound). Otherwise only its descendants are.
	self bool
	// after is the bound for its descendants: "" for none, else a full name.
	after string
	// first is the first page of its listing, from its beginning; requested ahead for
	// children whose listing starts there (nil otherwise, or not yet requested).
	first *listing
}

// walkDir emits, in byte order, the repositories strictly under the directory of full
// name dir ("" for the root of the repositories tree) whose names sort after `after`
// ("" for all). first, when not nil, is the first page of dir's listing from its
// beginning (only when after is ""). It returns errStopped when emit returned false.
func (w *walker) walkDir(dir, after string, first *listing, emit func(string) bool) error {
	base := repositoriesDir()
	if dir != "" {
		base = repoDir(dir)
	}
	full := func(c string) string {
		if dir == "" {
			return c
		}
		return dir + "/" + c
	}
	// The bound, relative to this directory: its first component a0 and the rest.
	rel := after
	if dir != "" {
		rel = strings.TrimPrefix(after, dir+"/")
	}
	a0, _, deeper := strings.Cut(rel, "/")
	if a0 == "" {
		rel = "" // every name sorts after "" and after "/..."
	}

	// Children sorting before a0 that still hold names after the bound: those whose name
	// is a0 cut before a '-' or '.' ("a" for a0 "a-b": "a/x" sorts after "a-b/..."). Each
	// is probed with a one-entry List, in parallel with the main listing.
	var probes []*listing
	var probeNames []string
	if rel != "" {
		for i := 1; i < len(a0); i++ {
			if a0[i] == '-' || a0[i] == '.' {
				probeNames = append(probeNames, a0[:i])
				probes = append(probes, w.list(base, base+"/"+before(a0[:i]), 1))
			}
		}
	}
	pages := newPager(w, base, rel, a0, first)

	var children []*child
	for i, p := range probes {
		l, err := p.wait()
		if err != nil {
			return err
		}
		if len(l) > 0 && l[0].IsDir && l[0].Path == base+"/"+probeNames[i] {
			children = append(children, &child{name: probeNames[i]})
		}
	}

	// deferred holds the children whose descendants come later: a child c's subtree sorts
	// at "c/", after siblings such as "c-d" and "c.e" ('-' and '.' sort before '/'). The
	// keys nest, so a stack keeps them in order.
	var deferred []*child
	descend := func(c *child) error {
		return w.walkDir(full(c.name), c.after, c.first, emit)
	}
	// popUntil descends into the deferred children whose subtrees sort before name
	// (all of them when name is "").
	popUntil := func(name string) error {
		for len(deferred) > 0 {
			top := deferred[len(deferred)-1]
			if name != "" && top.name+"/" > name {
				return nil
			}
			deferred = deferred[:len(deferred)-1]
			if err := descend(top); err != nil {
				return err
			}
		}
		return nil
	}
	visit := func(c *child) error {
		if err := popUntil(c.name); err != nil {
			return err
		}
		if c.self {
			ok, err := w.isRepository(base+"/"+c.name, c.first)
			if err != nil {
				return err
			}
			if ok && !emit(full(c.name)) {
				return errStopped
			}
		}
		deferred = append(deferred, c)
		return nil
	}
	for _, c := range children {
		if err := visit(c); err != nil {
			return err
		}
	}
	for {
		page, err := pages.next()
		if err != nil {
			return err
		}
		if page == nil {
			break
		}
		// Children of this page, each with its first page requested a window ahead.
		var cs []*child
		for _, fi := range page {
			name := path.Base(fi.Path)
			if !fi.IsDir || strings.HasPrefix(name, "_") {
				continue
			}
			c := &child{name: name, self: true}
			switch {
			case rel == "":
			case name < a0:
				continue // the listing starts at a0: never listed
			case name == a0:
				c.self = false
				if deeper {
					c.after = after
				}
			case deeper && strings.HasPrefix(name, a0) && (name[len(a0)] == '-' || name[len(a0)] == '.'):
				continue // "a-b" and its subtree sort before "a/x"
			}
			cs = append(cs, c)
		}
		for i, c := range cs {
			for j := i; j < len(cs) && j < i+walkWindow; j++ {
				if cs[j].first == nil && cs[j].after == "" {
					cs[j].first = w.list(base+"/"+cs[j].name, "", walkPage)
				}
			}
			if err := visit(c); err != nil {
				return err
			}
		}
	}
	return popUntil("")
}

// isRepository reports whether the directory at p holds _layers, _manifests or _uploads;
// first is its listing's first page (from the beginning, walkPage entries).
func (w *walker) isRepository(p string, first *listing) (bool, error) {
	if first == nil {
		first = w.list(p, "", walkPage)
	}
	l, err := first.wait()
	if err != nil {
		return false, err
	}
	if found, settled := repoMarkers(p, l, len(l) < walkPage); settled {
		return found, nil
	}
	// A directory with more than a page of names before "_uploads": look there.
	l, err = w.list(p, p+"/_", 4).wait()
	if err != nil {
		return false, err
	}
	found, _ := repoMarkers(p, l, true)
	return found, nil
}

// repoMarkers looks for a repository's directories in the listing l of the directory p.
// settled reports whether the answer is final: the listing is complete or went past them.
func repoMarkers(p string, l []driver.Info, complete bool) (found, settled bool) {
	for _, fi := range l {
		if !fi.IsDir {
			continue
		}
		switch strings.TrimPrefix(fi.Path, p+"/") {
		case "_layers", "_manifests", "_uploads":
			return true, true
		}
	}
	return false, complete || (len(l) > 0 && l[len(l)-1].Path > p+"/_uploads")
}

// pager reads a directory's listing a page at a time, with the next page requested as
// soon as a full one arrives.
type pager struct {
	w       *walker
	dir     string
	pending *listing
}

// newPager returns the pages of the directory dir (a storage path) from its beginning
// (rel == "": first, if not nil, is the first page) or from the name a0 on.
func newPager(w *walker, dir, rel, a0 string, first *listing) *pager {
	if rel != "" {
		first = w.list(dir, dir+"/"+before(a0), walkPage)
	} else if first == nil {
		first = w.list(dir, "", walkPage)
	}
	return &pager{w: w, dir: dir, pending: first}
}

// next returns the next page, or nil at the end of the listing.
func (p *pager) next() ([]driver.Info, error) {
	if p.pending == nil {
		return nil, nil
	}
	l, err := p.pending.wait()
	p.pending = nil
	if err != nil {
		return nil, err
	}
	if len(l) == walkPage {
		p.pending = p.w.list(p.dir, l[len(l)-1].Path, walkPage)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

// matchRepository reports whether name is selected by pattern: a path.Match pattern
// ("team/*", where * does not cross "/"), or a prefix followed by "/**" for a whole
// subtree ("team/**"); "" or "**" selects every repository. Fsck and Migration select
// repositories with it.
func matchRepository(pattern, name string) bool {
	if pattern == "" || pattern == "**" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "/**"); ok {
		if ok, _ := path.Match(prefix, name); ok {
			return true
		}
		for i := range len(name) {
			if name[i] == '/' {
				if ok, _ := path.Match(prefix, name[:i]); ok {
					return true
				}
			}
		}
		return false
	}
	ok, _ := path.Match(pattern, name)
	return ok
}

// checkRepositoryPattern returns an error for a pattern matchRepository cannot use.
func checkRepositoryPattern(pattern string) error {
	if _, err := path.Match(strings.TrimSuffix(pattern, "/**"), ""); err != nil {
		return fmt.Errorf("repository pattern %q: %w", pattern, err)
	}
	return nil
}

// Package listing puts the entries of an object store's delimited listing into the order
// of driver.Driver.List. Who may import it: the drivers under driver/.
//
// Object stores list a directory's entries in name order, where a subdirectory "c" sorts
// as its prefix "c/", while List sorts by path, where it sorts as "c". The two orders
// differ exactly where a name continues a directory's name with '-' or '.' (the only path
// characters below '/'): a store lists "c-d", "c.f", "c/" where List wants "c", "c-d",
// "c.f". A Merger collects the entries page by page and tells when the first limit of
// them, in path order, are final: when no entry the store has yet to list can sort
// before one of them.
package listing

import (
	"sort"
	"strings"

	"github.com/registryd/registryd/driver"
)

// Merger collects a listing of the directory whose names begin with prefix. The zero
// value is not usable: use New.
type Merger struct {
	prefix string
	after  string
	limit  int
	// entries is keyed by the store's key (a directory's with its slash): some stores
	// repeat the common prefixes on every page.
	entries map[string]driver.Info
}

// New returns a Merger for the listing of names under prefix that keeps only entries whose
// Path sorts after after (all when after is "") and at most limit of them (limit <= 0:
// all).
func New(prefix, after string, limit int) *Merger {
	return &Merger{prefix: prefix, after: after, limit: limit, entries: map[string]driver.Info{}}
}

// Add records an entry listed under key, the store's object name (for a directory, its
// prefix with the trailing slash). Entries at or before after are dropped; a key listed
// again replaces the earlier entry.
func (m *Merger) Add(key string, info driver.Info) {
	if m.after == "" || info.Path > m.after {
		m.entries[key] = info
	}
}

// Final reports, at the end of a page, whether the first limit entries are final, given
// that the store has listed every name up to cursor in its own order (a directory as
// "name/"). Without a limit, only the end of the listing is final.
func (m *Merger) Final(cursor string) bool {
	if m.limit <= 0 || len(m.entries) < m.limit {
		return false
	}
	keys := m.sorted()
	for _, key := range keys[:m.limit] {
		if !released(strings.TrimSuffix(key, "/"), m.prefix, cursor) {
			return false
		}
	}
	return true
}

// Result returns the entries sorted by Path, at most limit of them; never nil.
func (m *Merger) Result() []driver.Info {
	keys := m.sorted()
	if m.limit > 0 && len(keys) > m.limit {
		keys = keys[:m.limit]
	}
	out := make([]driver.Info, len(keys))
	for i, k := range keys {
		out[i] = m.entries[k]
	}
	return out
}

// sorted returns the keys of the entries in path order, an object before a directory of
// the same path.
func (m *Merger) sorted() []string {
	keys := make([]string, 0, len(m.entries))
	for k := range m.entries {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := m.entries[keys[i]], m.entries[keys[j]]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return !a.IsDir && b.IsDir
	})
	return keys
}

// released reports whether no entry the store lists after cursor can sort before the
// entry named name in path order.
//
// Such an entry would be a directory whose name is a proper prefix of name's last segment
// followed by '-' or '.': its key "Y/" sorts after name in the store's order. The
// shortest such directory has the greatest key; once the cursor has reached it, all of
// them have been listed.
func released(name, prefix, cursor string) bool {
	seg := strings.TrimPrefix(name, prefix)
	i := strings.IndexAny(seg[min(1, len(seg)):], "-.")
	if i < 0 {
		return true
	}
	return cursor >= prefix+seg[:i+1]+"/"
}

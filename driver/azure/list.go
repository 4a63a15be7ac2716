package azure

import (
	"context"
	"sort"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/registryd/registryd/driver"
)

// List implements driver.Driver with a hierarchical listing (delimiter "/"), starting at
// `after` where the service supports StartFrom and skipping what lies before it otherwise.
//
// Azure orders a directory by its prefix "name/", the contract by "name": directory "c"
// comes after "c-d" and "c.f" in Azure's order but before them in ours. Entries are
// therefore held in a small sorted buffer and released only once the listing has moved
// past every directory that could still sort before them (see releasable).
func (d *Driver) List(ctx context.Context, dir, after string, limit int) ([]driver.Info, error) {
	if dir != "" {
		if err := driver.CheckPath(dir); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, &driver.PathError{Op: "list", Path: dir, Err: err}
	}
	prefix := d.dirPrefix(dir)
	afterKey := ""
	if after != "" {
		afterKey = d.key(after)
	}
	opts := &container.ListBlobsHierarchyOptions{}
	if prefix != "" {
		opts.Prefix = &prefix
	}
	if limit > 0 {
		n := int32(min(max(limit+1, 256), 5000))
		opts.MaxResults = &n
	}
	if rest, ok := strings.CutPrefix(afterKey, prefix); ok && rest != "" && !strings.Contains(rest, "/") {
		// Every entry sorting after `after` has a name (or prefix) >= afterKey.
		opts.StartFrom = &afterKey
	}

	var (
		out     []driver.Info
		pending []listEntry // sorted by key
	)
	// emit moves releasable entries to out; it reports whether out is full.
	emit := func(cursor string, done bool) bool {
		for len(pending) > 0 && (done || releasable(pending[0].key, prefix, cursor)) {
			out = append(out, pending[0].info)
			pending = pending[1:]
			if limit > 0 && len(out) >= limit {
				return true
			}
		}
		return false
	}
	add := func(key string, info driver.Info) {
		if afterKey != "" && key <= afterKey {
			return
		}
		e := listEntry{key: key, info: info}
		i := sort.Search(len(pending), func(i int) bool { return e.less(pending[i]) })
		pending = append(pending, listEntry{})
		copy(pending[i+1:], pending[i:])
		pending[i] = e
	}

	pager := d.container.NewListBlobsHierarchyPager("/", opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fail("list", dir, err)
		}
		cursor := ""
		if seg := page.Segment; seg != nil {
			for _, b := range seg.BlobItems {
				if b == nil || b.Name == nil {
					continue
				}
				cursor = max(cursor, *b.Name)
				info := driver.Info{Path: d.pathOf(*b.Name)}
				if p := b.Properties; p != nil {
					if p.ContentLength != nil {
						info.Size = *p.ContentLength
					}
					if p.LastModified != nil {
						info.ModTime = *p.LastModified
					}
				}
				add(*b.Name, info)
			}
			for _, bp := range seg.BlobPrefixes {
				if bp == nil || bp.Name == nil {
					continue
				}
				cursor = max(cursor, *bp.Name)
				key := strings.TrimSuffix(*bp.Name, "/")
				add(key, driver.Info{Path: d.pathOf(key), IsDir: true})
			}
		}
		if emit(cursor, false) {
			return out, nil
		}
	}
	emit("", true)
	if out == nil {
		out = []driver.Info{}
	}
	return out, nil
}

// listEntry is a listed object or directory; key is its blob name (a directory's prefix
// without the trailing slash).
type listEntry struct {
	key  string
	info driver.Info
}

// less orders by key, an object before a directory of the same name.
func (e listEntry) less(o listEntry) bool {
	if e.key != o.key {
		return e.key < o.key
	}
	return !e.info.IsDir && o.info.IsDir
}

// releasable reports whether no entry still to come in Azure's order can sort before key in
// the contract's order, given that the listing has returned every name up to cursor.
//
// A later entry Y sorts before key only if Y is a directory whose name is a proper prefix
// of key followed by '-' or '.' (the only path characters below '/'): its prefix "Y/" sorts
// after key in Azure's order. The shortest such Y has the greatest "Y/"; once the cursor
// has reached it, all of them have been seen.
func releasable(key, prefix, cursor string) bool {
	seg := key[len(prefix):]
	i := strings.IndexAny(seg[min(1, len(seg)):], "-.")
	if i < 0 {
		return true
	}
	return cursor >= prefix+seg[:i+1]+"/"
}

package gcs

import (
	"context"
	"errors"
	"sort"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/registryd/registryd/driver"
)

// listPageSize is the most entries asked of GCS per listing request.
const listPageSize = 1000

// List implements driver.Driver with a delimited listing that starts at the object name of
// after (GCS's startOffset) and pages until limit entries are certain.
//
// GCS orders a listing by object name, in which the subdirectory "a/" sorts after the
// object "a-b", while List orders by path ("a" before "a-b"). An entry is therefore
// returned only once no entry still unlisted can sort before it: listing continues while
// fewer than limit entries lie below the bound that pageBound derives from the listing's
// progress.
func (d *Driver) List(ctx context.Context, dir, after string, limit int) ([]driver.Info, error) {
	if dir != "" {
		if err := driver.CheckCall(ctx, "list", dir); err != nil {
			return nil, err
		}
	} else if err := ctx.Err(); err != nil {
		return nil, &driver.PathError{Op: "list", Path: dir, Err: err}
	}
	prefix := d.dirPrefix(dir)
	q := &storage.Query{Prefix: prefix, Delimiter: "/", Projection: storage.ProjectionNoACL}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated"}); err != nil {
		return nil, fail(ctx, "list", dir, classifyNoObject(err))
	}
	if after != "" {
		if off := d.key(after); off > prefix {
			q.StartOffset = off
		}
	}
	it := d.bucket.Objects(ctx, q)
	pageSize := listPageSize
	if limit > 0 && limit < listPageSize {
		pageSize = limit + 1
	}
	it.PageInfo().MaxSize = pageSize

	// entries is keyed by object name (a directory without its slash): some servers
	// repeat the common prefixes on every page.
	entries := map[string]driver.Info{}
	var lastItem, lastPrefix string
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fail(ctx, "list", dir, classifyNoObject(err))
		}
		name, isDir := attrs.Name, false
		if attrs.Prefix != "" {
			name, isDir = strings.TrimSuffix(attrs.Prefix, "/"), true
			lastPrefix = max(lastPrefix, attrs.Prefix)
		} else {
			lastItem = max(lastItem, attrs.Name)
		}
		// Skip the driver's hidden objects, and an object named like the directory
		// itself (a "folder" placeholder some tools create).
		if rel := strings.TrimPrefix(name, prefix); len(name) > len(prefix) && !strings.Contains(rel, hiddenMark) {
			if p := d.pathOf(name); after == "" || p > after {
				fi := driver.Info{Path: p, IsDir: isDir}
				if !isDir {
					fi.Size, fi.ModTime = attrs.Size, attrs.Updated
				}
				entries[name] = fi
			}
		}
		if limit > 0 && it.PageInfo().Remaining() == 0 && it.PageInfo().Token != "" {
			// A page is done and more follow: stop if limit entries are final.
			bound := pageBound(prefix, lastItem, lastPrefix)
			final := 0
			for name := range entries {
				if name < bound {
					final++
				}
			}
			if final >= limit {
				break
			}
		}
	}

	out := make([]driver.Info, 0, len(entries))
	for _, fi := range entries {
		out = append(out, fi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// pageBound returns an object name below which no entry still unlisted can sort, once
// the listing has returned objects up to lastItem and common prefixes up to lastPrefix.
//
// Every unlisted name sorts after the watermark w (the last object listed; the last
// prefix when no object was: servers that repeat all prefixes on every page have then
// reached the end). An unlisted object or directory named n > w sorts as n, except a
// directory "x/" > w whose name x < w: that happens when w begins with x followed by a
// byte below '/', so the bound is w cut before the first such byte after the prefix.
func pageBound(prefix, lastItem, lastPrefix string) string {
	w := lastItem
	if w == "" {
		w = lastPrefix
	}
	for i := len(prefix); i < len(w); i++ {
		if w[i] < '/' {
			return w[:i]
		}
	}
	return w
}

package gcs

import (
	"cmp"
	"context"
	"errors"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/listing"
)

// listPageSize is the most entries asked of GCS per listing request.
const listPageSize = 1000

// List implements driver.Driver with a delimited listing that starts at the object name of
// after (GCS's startOffset) and pages until a listing.Merger has limit entries that are
// final (GCS orders the subdirectory "a" as "a/", after the object "a-b").
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
	it := d.b(ctx).Objects(ctx, q)
	pageSize := listPageSize
	if limit > 0 && limit < listPageSize {
		pageSize = limit + 1
	}
	it.PageInfo().MaxSize = pageSize

	m := listing.New(prefix, after, limit)
	var lastItem, lastPrefix string
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fail(ctx, "list", dir, classifyNoObject(err))
		}
		key, name, isDir := attrs.Name, attrs.Name, false
		if attrs.Prefix != "" {
			key, name, isDir = attrs.Prefix, strings.TrimSuffix(attrs.Prefix, "/"), true
			lastPrefix = max(lastPrefix, attrs.Prefix)
		} else {
			lastItem = max(lastItem, attrs.Name)
		}
		// Skip the driver's hidden objects, and an object named like the directory
		// itself (a "folder" placeholder some tools create).
		if rel := strings.TrimPrefix(name, prefix); len(name) > len(prefix) && !strings.Contains(rel, hiddenMark) {
			fi := driver.Info{Path: d.pathOf(name), IsDir: isDir}
			if !isDir {
				fi.Size, fi.ModTime = attrs.Size, attrs.Updated
			}
			m.Add(key, fi)
		}
		// At the end of a page with more to come, stop once limit entries are final. The
		// cursor is the last object listed, or the last prefix when no object was:
		// servers that repeat all prefixes on every page have then reached the end.
		if it.PageInfo().Remaining() == 0 && it.PageInfo().Token != "" && m.Final(cmp.Or(lastItem, lastPrefix)) {
			break
		}
	}
	return m.Result(), nil
}

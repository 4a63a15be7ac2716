package azure

import (
	"context"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/listing"
)

// List implements driver.Driver with a hierarchical listing (delimiter "/"), starting at
// `after` where the service supports StartFrom and skipping what lies before it otherwise,
// and paging until a listing.Merger has limit entries that are final (Azure orders a
// directory "c" as "c/", after "c-d" and "c.f").
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

	m := listing.New(prefix, after, limit)
	cursor := ""
	pager := d.container.NewListBlobsHierarchyPager("/", opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fail("list", dir, err)
		}
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
				m.Add(*b.Name, info)
			}
			for _, bp := range seg.BlobPrefixes {
				if bp == nil || bp.Name == nil {
					continue
				}
				cursor = max(cursor, *bp.Name)
				m.Add(*bp.Name, driver.Info{Path: d.pathOf(strings.TrimSuffix(*bp.Name, "/")), IsDir: true})
			}
		}
		if m.Final(cursor) {
			break
		}
	}
	return m.Result(), nil
}

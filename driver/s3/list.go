package s3

import (
	"context"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/registryd/registryd/driver"
)

// List implements driver.Driver with ListObjectsV2 (delimiter "/", StartAfter the key of
// `after`), paginating until limit entries are certain.
//
// S3 orders a directory by its key with the trailing slash ("c/"), the contract by the
// path without it ("c"), and the two orders differ exactly where a name continues a
// directory's name with '-' or '.' (both sort before '/'): S3 returns "c-d", "c.f", "c/"
// where the contract wants "c", "c-d", "c.f". So the entries are sorted after fetching,
// and a page boundary is only a stopping point when no directory still to come could sort
// before one of the first limit entries (see complete). StartAfter = key(after) never
// skips an entry after `after`: an entry's key is its path or its path plus "/", both
// greater than `after`.
func (d *Driver) List(ctx context.Context, dir, after string, limit int) ([]driver.Info, error) {
	prefix := d.root
	if dir != "" {
		if err := driver.CheckPath(dir); err != nil {
			return nil, err
		}
		prefix = d.key(dir) + "/"
	}
	pathOf := func(name string) string {
		if dir == "" {
			return name
		}
		return dir + "/" + name
	}
	in := &s3.ListObjectsV2Input{Bucket: &d.bucket, Prefix: &prefix, Delimiter: aws.String("/")}
	if after != "" {
		if startAfter := d.key(after); startAfter > prefix {
			in.StartAfter = &startAfter
		}
	}
	var entries []driver.Info
	add := func(info driver.Info) {
		if after == "" || info.Path > after {
			entries = append(entries, info)
		}
	}
	for {
		out, err := d.client.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, fail(ctx, "list", dir, err)
		}
		lastKey := ""
		for _, obj := range out.Contents {
			key := aws.ToString(obj.Key)
			lastKey = max(lastKey, key)
			name := strings.TrimPrefix(key, prefix)
			// Skip a "dir/" marker object, sidecars and any key that is no valid path.
			if !validName(name) {
				continue
			}
			add(driver.Info{Path: pathOf(name), Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified)})
		}
		for _, cp := range out.CommonPrefixes {
			key := aws.ToString(cp.Prefix)
			lastKey = max(lastKey, key)
			name := strings.TrimSuffix(strings.TrimPrefix(key, prefix), "/")
			if !validName(name) {
				continue
			}
			add(driver.Info{Path: pathOf(name), IsDir: true})
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
		if !aws.ToBool(out.IsTruncated) || out.NextContinuationToken == nil {
			break
		}
		if limit > 0 && complete(entries, limit, prefix, dir, lastKey) {
			break
		}
		in.ContinuationToken, in.StartAfter = out.NextContinuationToken, nil
	}
	if limit > 0 && len(entries) > limit {
		entries = entries[:limit]
	}
	return entries, nil
}

// complete reports whether the first limit of the sorted entries are final once every key
// up to lastKey has been listed: there are limit of them, and none of them has a name
// prefix (ending before a '-' or '.') whose directory key sorts after lastKey, since such
// a directory, if it exists, is yet to come and sorts before that entry.
func complete(entries []driver.Info, limit int, prefix, dir, lastKey string) bool {
	if len(entries) < limit {
		return false
	}
	strip := 0
	if dir != "" {
		strip = len(dir) + 1
	}
	for _, e := range entries[:limit] {
		name := e.Path[strip:]
		for i := 1; i < len(name); i++ {
			if (name[i] == '-' || name[i] == '.') && prefix+name[:i]+"/" > lastKey {
				return false
			}
		}
	}
	return true
}

// validName reports whether name is one valid path segment.
func validName(name string) bool {
	return name != "" && !strings.Contains(name, "/") && driver.CheckPath(name) == nil
}

package s3

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/listing"
)

// List implements driver.Driver with ListObjectsV2 (delimiter "/", StartAfter the key of
// `after`), paginating until a listing.Merger has limit entries that are final (S3 orders
// a directory "c" as "c/"). StartAfter = key(after) never skips an entry after `after`: an
// entry's key is its path or its path plus "/", both greater than `after`.
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
	m := listing.New(prefix, after, limit)
	cursor := ""
	for {
		out, err := d.c(ctx).ListObjectsV2(ctx, in)
		if err != nil {
			return nil, fail(ctx, "list", dir, err)
		}
		for _, obj := range out.Contents {
			key := aws.ToString(obj.Key)
			cursor = max(cursor, key)
			// Skip a "dir/" marker object, sidecars and any key that is no valid path.
			if name := strings.TrimPrefix(key, prefix); validName(name) {
				m.Add(key, driver.Info{Path: pathOf(name), Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified)})
			}
		}
		for _, cp := range out.CommonPrefixes {
			key := aws.ToString(cp.Prefix)
			cursor = max(cursor, key)
			if name := strings.TrimSuffix(strings.TrimPrefix(key, prefix), "/"); validName(name) {
				m.Add(key, driver.Info{Path: pathOf(name), IsDir: true})
			}
		}
		if !aws.ToBool(out.IsTruncated) || out.NextContinuationToken == nil || m.Final(cursor) {
			break
		}
		in.ContinuationToken, in.StartAfter = out.NextContinuationToken, nil
	}
	return m.Result(), nil
}

// validName reports whether name is one valid path segment.
func validName(name string) bool {
	return name != "" && !strings.Contains(name, "/") && driver.CheckPath(name) == nil
}

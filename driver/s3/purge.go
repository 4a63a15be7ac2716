package s3

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/registryd/registryd/driver"
)

// PurgeSessions implements driver.SessionPurger: every incomplete multipart upload of the
// object's key is aborted (ListMultipartUploads with the key as prefix, which S3-compatible
// stores such as MinIO support; paginated). Sidecars are objects next to the key, which
// deleting its directory removes.
func (d *Driver) PurgeSessions(ctx context.Context, p string) error {
	if err := driver.CheckCall(ctx, "purge sessions", p); err != nil {
		return err
	}
	key := d.key(p)
	in := &s3.ListMultipartUploadsInput{Bucket: &d.bucket, Prefix: &key}
	for {
		out, err := d.c(ctx).ListMultipartUploads(ctx, in)
		if err != nil {
			return fail(ctx, "purge sessions", p, err)
		}
		for _, u := range out.Uploads {
			if aws.ToString(u.Key) != key {
				continue
			}
			_, err := d.c(ctx).AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &d.bucket, Key: u.Key, UploadId: u.UploadId})
			if err != nil {
				if ferr := fail(ctx, "purge sessions", p, err); !errors.Is(ferr, driver.ErrNotFound) {
					return ferr
				}
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

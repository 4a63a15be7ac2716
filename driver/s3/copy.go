package s3

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/registryd/registryd/driver"
)

// Copy implements driver.Driver server-side: one CopyObject up to the multipart copy
// threshold, else a multipart upload of dst whose parts are UploadPartCopy ranges of src,
// copied in parallel (multipartconcurrency at a time). A single CopyObject cannot exceed
// 5 GiB, and the threshold is capped there. The destination appears atomically either
// way; a failed multipart copy is aborted.
func (d *Driver) Copy(ctx context.Context, src, dst string) error {
	if err := driver.CheckPath(src); err != nil {
		return err
	}
	if err := driver.CheckPath(dst); err != nil {
		return err
	}
	head, err := d.head(ctx, d.key(src))
	if err != nil {
		return &driver.PathError{Op: "copy", Path: src, Err: err}
	}
	_, err = d.copyObject(ctx, src, dst, aws.ToInt64(head.ContentLength))
	return err
}

// copyObject copies the size bytes of the object at src to dst as Copy does and returns
// the new object's ETag (its Info.Version).
func (d *Driver) copyObject(ctx context.Context, src, dst string, size int64) (etag string, err error) {
	source := copySource(d.bucket, d.key(src))
	dstKey := d.key(dst)
	if size <= d.copyThreshold {
		in := &s3.CopyObjectInput{Bucket: &d.bucket, Key: &dstKey, CopySource: &source, StorageClass: d.storageClass, ACL: d.acl}
		d.encryption(&in.ServerSideEncryption, &in.SSEKMSKeyId)
		out, err := d.c(ctx).CopyObject(ctx, in)
		if err != nil {
			return "", fail(ctx, "copy", src, err)
		}
		if out.CopyObjectResult != nil {
			etag = aws.ToString(out.CopyObjectResult.ETag)
		}
		return etag, nil
	}
	if etag, err = d.copyMultipart(ctx, source, dstKey, size); err != nil {
		return "", &driver.PathError{Op: "copy", Path: src, Err: err}
	}
	return etag, nil
}

// copyMultipart copies size bytes of source to dstKey with UploadPartCopy and returns the
// new object's ETag.
func (d *Driver) copyMultipart(ctx context.Context, source, dstKey string, size int64) (string, error) {
	chunk := d.copyChunk
	if n := (size + chunk - 1) / chunk; n > maxParts {
		chunk = (size + maxParts - 1) / maxParts
	}
	create := &s3.CreateMultipartUploadInput{Bucket: &d.bucket, Key: &dstKey, StorageClass: d.storageClass, ACL: d.acl}
	d.encryption(&create.ServerSideEncryption, &create.SSEKMSKeyId)
	up, err := d.c(ctx).CreateMultipartUpload(ctx, create)
	if err != nil {
		return "", failErr(ctx, err)
	}
	uploadID := up.UploadId
	abort := func() {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
		defer cancel()
		_, _ = d.c(actx).AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &d.bucket, Key: &dstKey, UploadId: uploadID})
	}
	parts := make([]types.CompletedPart, (size+chunk-1)/chunk)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.concurrency)
	for i := range parts {
		start := int64(i) * chunk
		end := min(start+chunk, size) - 1
		g.Go(func() error {
			out, err := d.c(gctx).UploadPartCopy(gctx, &s3.UploadPartCopyInput{
				Bucket: &d.bucket, Key: &dstKey, UploadId: uploadID, PartNumber: aws.Int32(int32(i + 1)),
				CopySource: &source, CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", start, end)),
			})
			if err != nil {
				return failErr(gctx, err)
			}
			parts[i] = types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: out.CopyPartResult.ETag}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		abort()
		return "", err
	}
	out, err := d.c(ctx).CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &d.bucket, Key: &dstKey, UploadId: uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		abort()
		return "", failErr(ctx, err)
	}
	return aws.ToString(out.ETag), nil
}

// copySource is the URL-encoded "bucket/key" CopySource parameter.
func copySource(bucket, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return bucket + "/" + strings.Join(segs, "/")
}

// Package s3 is the driver.Driver on Amazon S3 and S3-compatible stores (MinIO, Ceph,
// R2), built on aws-sdk-go-v2.
//
// Objects are keys <rootdirectory>/<path> in one bucket. Put is one PutObject (larger
// bodies go through a multipart Writer); Copy is server-side (CopyObject, or parallel
// UploadPartCopy above the multipart copy threshold, which also lifts CopyObject's 5 GiB
// limit); List is ListObjectsV2 with delimiter "/"; URL presigns a GetObject.
//
// A Writer is a lazily created multipart upload plus, once State has been called, a
// sidecar object next to the path holding the bytes short of a full part and the
// session's acknowledged progress (see writer.go). Sidecars are named
// "<path>~<session>.tail": "~" is not a valid path character, so they never collide with
// an object, and List does not report them.
//
// Retries: requests of calls that driver.WithRetry retries (driver.RetriedByCaller) are
// tried once, so WithRetry is their only retry layer. Any other request (a Writer's part
// uploads and completion, any call on a driver not wrapped by WithRetry) is retried by
// the SDK's standard retryer (SlowDown, 503, 5xx and connection errors; client-side retry
// quota disabled) with the attempts and full-jitter backoff of the policy given by
// Options.Retry, by default driver.DefaultRetryPolicy. Either way a request is made at
// most MaxAttempts times; an error surfaces as driver.ErrThrottled or
// driver.ErrUnavailable when they are spent.
//
// Who may import it: cmd/registryd and tests.
package s3

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/parts"
)

const (
	// minChunkSize is S3's smallest part (all but the last).
	minChunkSize = 5 << 20
	// maxChunkSize is S3's largest part.
	maxChunkSize = 5 << 30
	// maxParts is S3's largest part count of one multipart upload.
	maxParts = 10000
	// defaultChunkSize is the part size when Options.ChunkSize is 0.
	defaultChunkSize = 16 << 20
	// defaultConcurrency is the part buffers of one upload (one filling, the others
	// uploading) when Options.Concurrency is 0.
	defaultConcurrency = 4
	// defaultCopyThreshold and defaultCopyChunk apply when Options.CopyThreshold and Options.CopyChunkSize are 0.
	defaultCopyThreshold = 32 << 20
	defaultCopyChunk     = 32 << 20
	// defaultMemoryBudget caps part buffers across all writers of a Driver.
	defaultMemoryBudget = 128 << 20
	// deleteBatch is the most keys one DeleteObjects accepts.
	deleteBatch = 1000
)

// Driver stores objects in one S3 bucket. It is safe for concurrent use, and several
// processes may share the bucket (and resume each other's writers).
type Driver struct {
	// client retries requests with the driver's policy; once tries each request once.
	// c picks one of them for a call.
	client  *s3.Client
	once    *s3.Client
	presign *s3.PresignClient
	bucket  string
	// root is the configured root directory with one trailing slash, or "".
	root string

	chunk         int64
	concurrency   int
	copyThreshold int64
	copyChunk     int64
	storageClass  types.StorageClass
	acl           types.ObjectCannedACL
	sse           types.ServerSideEncryption
	kmsKeyID      string
	// checksums is false when Options.DisableChecksums: no CRC32 on parts.
	checksums bool
	// bodyOptions are the per-call options of requests carrying object data: unsigned
	// payloads when a CRC32 checksum protects the body, none otherwise.
	bodyOptions []func(*s3.Options)

	// budget caps the bytes of part buffers held by all writers of this Driver.
	// It recycles part buffers of exactly chunk bytes.
	budget     *parts.Budget
	budgetSize int64
}

var _ driver.Driver = (*Driver)(nil)

// Options are the driver's settings. The zero value of each field is its default.
type Options struct {
	// RootDirectory is the key prefix of every object ("" or "/": the bucket root);
	// leading and trailing slashes are ignored.
	RootDirectory string
	// ChunkSize is the part size of multipart uploads, between 5 MiB and 5 GiB (S3's
	// limits). Default 16 MiB.
	ChunkSize int64
	// Concurrency is the part buffers of one upload (one filling, the others uploading),
	// at least 1. Default 4.
	Concurrency int
	// CopyThreshold is the object size above which Copy uses a multipart copy, between 0
	// and 5 GiB. Default 32 MiB.
	CopyThreshold int64
	// CopyChunkSize is the part size of a multipart copy, between 5 MiB and 5 GiB.
	// Default 32 MiB.
	CopyChunkSize int64
	// MemoryBudget caps the bytes of part buffers held by all writers of the Driver; at
	// least ChunkSize. Default 128 MiB.
	MemoryBudget int64
	// StorageClass of new objects. Default "": the bucket's default (STANDARD).
	StorageClass types.StorageClass
	// Encrypt asks for server-side encryption with S3-managed keys (SSE-S3). Default off.
	Encrypt bool
	// KMSKeyID, when set, asks for SSE-KMS with this key instead (Encrypt is then
	// implied).
	KMSKeyID string
	// ACL is the canned ACL sent with every object written (PutObject, multipart uploads
	// and copies). Default "": none is sent and the bucket's default applies (buckets with
	// ACLs disabled refuse most ACLs).
	ACL types.ObjectCannedACL
	// PresignEndpoint, when set, is the scheme://host[:port] that signed URLs point to
	// instead of the client's endpoint (a public name for an in-cluster store). Default "":
	// the client's endpoint.
	PresignEndpoint string
	// DisableChecksums turns off the CRC32 checksums of requests and responses (for
	// S3-compatible stores without them). Default: checksums on.
	DisableChecksums bool
	// Retry is the policy of the requests the driver retries itself (see the package
	// documentation); registryd passes storage.retry, the policy of its
	// driver.WithRetry. MaxAttempts below 2 disables these retries. Default (zero
	// value): driver.DefaultRetryPolicy.
	Retry driver.RetryPolicy
}

// policyBackoff is the SDK retryer's backoff drawn from a driver.RetryPolicy, so that the
// SDK's retries sleep as driver.WithRetry's do.
type policyBackoff struct{ p driver.RetryPolicy }

// BackoffDelay implements retry.BackoffDelayer; attempt is 1 before the first retry.
func (b policyBackoff) BackoffDelay(attempt int, _ error) (time.Duration, error) {
	return b.p.Backoff(attempt, mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64()))), nil
}

// c returns the client for a request made under ctx: one trying once when the caller
// retries the call (driver.RetriedByCaller), else the retrying one.
func (d *Driver) c(ctx context.Context) *s3.Client {
	if driver.RetriedByCaller(ctx) {
		return d.once
	}
	return d.client
}

// standardRetryer returns the SDK's standard retryer making at most attempts attempts
// with p's backoff, without the client-side retry quota: it turns a burst of failures
// into "retry quota exceeded" errors shared by every request of the process, and
// registryd bounds retries per request instead.
func standardRetryer(attempts int, p driver.RetryPolicy) aws.Retryer {
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = max(attempts, 1)
		so.Backoff = policyBackoff{p}
		so.RateLimiter = ratelimit.None
	})
}

// New returns a driver on bucket through client, which carries the endpoint, region,
// credentials and HTTP transport. The driver makes its own copies of client: one
// retrying with opts.Retry and one trying each request once, both with the driver's
// checksum settings, so client's retryer and checksum options are replaced. New makes no
// network call: a missing bucket or a rejected credential surfaces on the first
// operation (as ErrMisconfigured or ErrPermission). Options breaking an invariant of the
// driver (a part size S3 refuses, a budget below one part) are refused with a plain error.
func New(client *s3.Client, bucket string, opts Options) (*Driver, error) {
	if client == nil || bucket == "" {
		return nil, errors.New("s3: a client and a bucket are required")
	}
	d := &Driver{
		bucket:        bucket,
		chunk:         cmp.Or(opts.ChunkSize, defaultChunkSize),
		concurrency:   cmp.Or(opts.Concurrency, defaultConcurrency),
		copyThreshold: cmp.Or(opts.CopyThreshold, defaultCopyThreshold),
		copyChunk:     cmp.Or(opts.CopyChunkSize, defaultCopyChunk),
		storageClass:  opts.StorageClass,
		acl:           opts.ACL,
		checksums:     !opts.DisableChecksums,
		budgetSize:    cmp.Or(opts.MemoryBudget, defaultMemoryBudget),
	}
	switch {
	case d.chunk < minChunkSize || d.chunk > maxChunkSize:
		return nil, fmt.Errorf("s3: chunk size must be between %d and %d, got %d", minChunkSize, maxChunkSize, d.chunk)
	case d.copyChunk < minChunkSize || d.copyChunk > maxChunkSize:
		return nil, fmt.Errorf("s3: copy chunk size must be between %d and %d, got %d", minChunkSize, maxChunkSize, d.copyChunk)
	case d.copyThreshold < 0 || d.copyThreshold > maxChunkSize:
		return nil, fmt.Errorf("s3: copy threshold must be between 0 and %d, got %d", maxChunkSize, d.copyThreshold)
	case d.concurrency < 1:
		return nil, fmt.Errorf("s3: concurrency must be positive, got %d", d.concurrency)
	case d.budgetSize < d.chunk:
		return nil, fmt.Errorf("s3: memory budget must be at least the chunk size (%d), got %d", d.chunk, d.budgetSize)
	}
	if d.checksums {
		d.bodyOptions = []func(*s3.Options){withUnsignedPayload}
	}
	if root := strings.Trim(opts.RootDirectory, "/"); root != "" {
		d.root = root + "/"
	}
	if opts.KMSKeyID != "" {
		d.sse, d.kmsKeyID = types.ServerSideEncryptionAwsKms, opts.KMSKeyID
	} else if opts.Encrypt {
		d.sse = types.ServerSideEncryptionAes256
	}
	d.budget = parts.NewBudget(d.budgetSize, d.chunk)

	policy := opts.Retry
	if policy == (driver.RetryPolicy{}) {
		policy = driver.DefaultRetryPolicy()
	}
	own := func(so *s3.Options) {
		if opts.DisableChecksums {
			so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
		// Ranged and multipart GETs carry no full-object checksum; do not log each skip.
		so.DisableLogOutputChecksumValidationSkipped = true
	}
	base := client.Options()
	d.client = s3.New(base, own, func(so *s3.Options) {
		so.Retryer = standardRetryer(policy.MaxAttempts, policy)
	})
	d.once = s3.New(base, own, func(so *s3.Options) {
		so.Retryer = standardRetryer(1, policy)
		so.RetryMaxAttempts = 0 // the retryer's 1, not the configuration's
	})
	d.presign = s3.NewPresignClient(d.client, func(po *s3.PresignOptions) {
		if ep := opts.PresignEndpoint; ep != "" {
			po.ClientOptions = append(po.ClientOptions, func(o *s3.Options) { o.BaseEndpoint = aws.String(ep) })
		}
	})
	return d, nil
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "s3" }

// key returns the bucket key of a driver path.
func (d *Driver) key(p string) string { return d.root + p }

// fail wraps a failed SDK call's error for method op on path p: the caller's context
// error if ctx is done (so cancellation is reported as such even when the SDK saw it as a
// transport failure), else the classified error.
func fail(ctx context.Context, op, p string, err error) error {
	return &driver.PathError{Op: op, Path: p, Err: failErr(ctx, err)}
}

// Stat implements driver.Driver.
func (d *Driver) Stat(ctx context.Context, p string) (driver.Info, error) {
	if err := driver.CheckPath(p); err != nil {
		return driver.Info{}, err
	}
	out, err := d.head(ctx, d.key(p))
	if err != nil {
		return driver.Info{}, &driver.PathError{Op: "stat", Path: p, Err: err}
	}
	return driver.Info{Path: p, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified), Version: aws.ToString(out.ETag)}, nil
}

// head is HeadObject with a trustworthy not-found: S3 answers a HEAD with a bare 404 both
// for a missing key and a missing bucket, so a 404 is confirmed with HeadBucket; only when
// the bucket exists is the error ErrNotFound. The error is classified, not wrapped in a
// PathError.
func (d *Driver) head(ctx context.Context, key string) (*s3.HeadObjectOutput, error) {
	out, err := d.c(ctx).HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: &key})
	if err == nil {
		return out, nil
	}
	cerr := failErr(ctx, err)
	if !errors.Is(cerr, driver.ErrNotFound) {
		return nil, cerr
	}
	if berr := d.checkBucket(ctx); berr != nil {
		return nil, berr
	}
	return nil, cerr
}

// checkBucket returns nil if the bucket exists and is accessible, ErrMisconfigured if S3
// says it does not exist, or the classified failure.
func (d *Driver) checkBucket(ctx context.Context) error {
	_, err := d.c(ctx).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &d.bucket})
	if err == nil {
		return nil
	}
	cerr := failErr(ctx, err)
	if errors.Is(cerr, driver.ErrNotFound) {
		return fmt.Errorf("bucket %q: %w", d.bucket, driver.ErrMisconfigured)
	}
	return cerr
}

// failErr is fail without the PathError.
func failErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		// The SDK's error is context only: the call ended because ctx did.
		return fmt.Errorf("%w (%v)", ctxErr, err) //nolint:errorlint // callers match ctx's error, never the SDK's
	}
	return classify(err)
}

// Reader implements driver.Driver.
func (d *Driver) Reader(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	if err := driver.CheckPath(p); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, &driver.PathError{Op: "reader", Path: p, Err: fmt.Errorf("negative offset %d: %w", offset, driver.ErrPreconditionFailed)}
	}
	empty := func() (io.ReadCloser, error) {
		info, err := d.Stat(ctx, p)
		if err != nil {
			return nil, err
		}
		if offset > info.Size {
			return nil, &driver.PathError{Op: "reader", Path: p, Err: fmt.Errorf("offset %d past size %d: %w", offset, info.Size, driver.ErrPreconditionFailed)}
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	if length == 0 {
		return empty()
	}
	in := &s3.GetObjectInput{Bucket: &d.bucket, Key: aws.String(d.key(p))}
	switch {
	case length > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	case offset > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := d.c(ctx).GetObject(ctx, in)
	if err != nil {
		ferr := fail(ctx, "reader", p, err)
		if errors.Is(ferr, driver.ErrPreconditionFailed) && in.Range != nil {
			// 416: the range starts at or past the end (offset == size, or any range
			// of an empty object).
			return empty()
		}
		return nil, ferr
	}
	size := int64(-1)
	switch {
	case out.ContentRange != nil:
		size = driver.ContentRangeSize(*out.ContentRange)
	case in.Range == nil && out.ContentLength != nil:
		size = *out.ContentLength
	}
	return &body{ctx: ctx, rc: out.Body, path: p, etag: aws.ToString(out.ETag), size: size}, nil
}

// body classifies the errors of a GetObject body stream and reports the object's ETag
// as its version.
type body struct {
	ctx  context.Context
	rc   io.ReadCloser
	path string
	etag string
	size int64
}

// Version implements driver.VersionedReader.
func (b *body) Version() string { return b.etag }

// ObjectSize implements driver.SizedReader.
func (b *body) ObjectSize() int64 { return b.size }

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fail(b.ctx, "read", b.path, err)
	}
	return n, err
}

func (b *body) Close() error { return b.rc.Close() }

// Put implements driver.Driver. Bodies up to the part size are sent with one PutObject;
// larger ones (or an unknown size that turns out larger) stream through a multipart
// Writer, which is atomic too.
func (d *Driver) Put(ctx context.Context, p string, r io.Reader, size int64) error {
	if err := driver.CheckPath(p); err != nil {
		return err
	}
	if size > d.chunk {
		return d.putMultipart(ctx, p, nil, r, size)
	}
	var buf []byte
	var err error
	if size >= 0 {
		buf = make([]byte, size)
		_, err = io.ReadFull(r, buf)
	} else {
		buf, err = io.ReadAll(io.LimitReader(r, d.chunk+1))
		if err == nil && int64(len(buf)) > d.chunk {
			// More than a part: continue as a multipart upload.
			return d.putMultipart(ctx, p, buf, r, -1)
		}
	}
	if err != nil {
		return &driver.PathError{Op: "put", Path: p, Err: fmt.Errorf("reading body: %w", err)}
	}
	if _, err := d.putObject(ctx, d.key(p), buf, true); err != nil {
		return &driver.PathError{Op: "put", Path: p, Err: err}
	}
	return nil
}

// putMultipart streams head and then r through a Writer and commits it; size >= 0 is
// the exact total expected.
func (d *Driver) putMultipart(ctx context.Context, p string, head []byte, r io.Reader, size int64) error {
	w := d.newWriter(ctx, p)
	_, err := w.Write(head)
	if err == nil {
		_, err = io.Copy(w, r)
	}
	if err == nil && size >= 0 && w.Size() != size {
		err = fmt.Errorf("body of %d bytes, want %d: %w", w.Size(), size, io.ErrUnexpectedEOF)
	}
	if err != nil {
		_ = w.Abort(context.WithoutCancel(ctx))
		var pe *driver.PathError
		if errors.As(err, &pe) {
			return err
		}
		return &driver.PathError{Op: "put", Path: p, Err: fmt.Errorf("reading body: %w", err)}
	}
	return w.Commit(ctx)
}

// putObject stores b at key with one PutObject, with the configured encryption (and
// storage class when data is true: sidecars stay in the default class).
func (d *Driver) putObject(ctx context.Context, key string, b []byte, data bool, meta ...string) (*s3.PutObjectOutput, error) {
	out, err := d.c(ctx).PutObject(ctx, d.putObjectInput(key, b, data, meta), d.bodyOptions...)
	if err != nil {
		return nil, failErr(ctx, err)
	}
	return out, nil
}

// putObjectInput is the PutObject request of putObject.
func (d *Driver) putObjectInput(key string, b []byte, data bool, meta []string) *s3.PutObjectInput {
	in := &s3.PutObjectInput{
		Bucket:        &d.bucket,
		Key:           &key,
		Body:          bytes.NewReader(b),
		ContentLength: aws.Int64(int64(len(b))),
	}
	d.encryption(&in.ServerSideEncryption, &in.SSEKMSKeyId)
	in.ACL = d.acl
	if data {
		in.StorageClass = d.storageClass
	}
	if len(meta) > 0 {
		in.Metadata = map[string]string{}
		for i := 0; i+1 < len(meta); i += 2 {
			in.Metadata[meta[i]] = meta[i+1]
		}
	}
	if d.checksums {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
	}
	return in
}

// PutIf implements driver.Driver with a conditional PutObject: If-None-Match: * when
// ifVersion is "", else If-Match: ifVersion (versions are ETags). S3 compares and writes
// atomically; it answers a failed condition with 412 PreconditionFailed, a conditional
// write that lost a race with another one still in flight with 409
// ConditionalRequestConflict, and If-Match on a missing key with 404 NoSuchKey: all three
// are ErrPreconditionFailed.
func (d *Driver) PutIf(ctx context.Context, p string, r io.Reader, size int64, ifVersion string) (string, error) {
	if err := driver.CheckCall(ctx, "putif", p); err != nil {
		return "", err
	}
	b, err := driver.ReadConditionalBody(p, r, size)
	if err != nil {
		return "", err
	}
	in := d.putObjectInput(d.key(p), b, false, nil)
	if ifVersion == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(ifVersion)
	}
	out, err := d.c(ctx).PutObject(ctx, in, d.bodyOptions...)
	if err != nil {
		cerr := failErr(ctx, err)
		if errors.Is(cerr, driver.ErrNotFound) {
			cerr = fmt.Errorf("%w: no object, want version %s: %w", driver.ErrPreconditionFailed, ifVersion, err)
		}
		return "", &driver.PathError{Op: "putif", Path: p, Err: cerr}
	}
	// A Stat cannot stand in for a missing ETag (another writer may have replaced the
	// object since), so a store that sends none reports "" (unknown).
	return aws.ToString(out.ETag), nil
}

// unsignedPayload is the SigV4 payload hash of a request whose body is not signed.
const unsignedPayload = "UNSIGNED-PAYLOAD"

// withUnsignedPayload is a per-call option for requests that send object data with a CRC32
// checksum header: the body is checked by that checksum (which S3 verifies and the
// signature covers) instead of a SigV4 payload hash. Over HTTPS the SDK already does this;
// over plain HTTP (an in-cluster MinIO, say) it would otherwise hash every byte with
// SHA-256 a second time on top of the registry's own digest.
func withUnsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("registryd.UnsignedPayload",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (
				middleware.InitializeOutput, middleware.Metadata, error,
			) {
				return next.HandleInitialize(v4.SetPayloadHash(ctx, unsignedPayload), in)
			}), middleware.After)
	})
}

// encryption sets the configured server-side encryption on a request.
func (d *Driver) encryption(sse *types.ServerSideEncryption, kmsKey **string) {
	*sse = d.sse
	if d.kmsKeyID != "" {
		*kmsKey = aws.String(d.kmsKeyID)
	}
}

// Delete implements driver.Driver: the object at p if there is one, else everything under
// p + "/". S3's DeleteObject succeeds on a missing key, so the object is looked up first.
func (d *Driver) Delete(ctx context.Context, p string) error {
	if err := driver.CheckPath(p); err != nil {
		return err
	}
	key := d.key(p)
	// The first page of the directory's listing is fetched while the object is looked up,
	// so deleting a directory (an upload's, after every push) costs no extra round trip.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type page struct {
		out *s3.ListObjectsV2Output
		err error
	}
	first := make(chan page, 1)
	go func() {
		out, err := d.listPage(lctx, key+"/", nil)
		first <- page{out, err}
	}()
	_, err := d.c(ctx).HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: &key})
	if err == nil {
		cancel()
		if _, err := d.c(ctx).DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &d.bucket, Key: &key}); err != nil {
			return fail(ctx, "delete", p, err)
		}
		return nil
	}
	if ferr := fail(ctx, "delete", p, err); !errors.Is(ferr, driver.ErrNotFound) {
		return ferr
	}
	// No object (or no bucket: the listing reports NoSuchBucket).
	pg := <-first
	n, err := d.deletePrefix(ctx, key+"/", pg.out, pg.err)
	if err != nil {
		return &driver.PathError{Op: "delete", Path: p, Err: err}
	}
	if n == 0 {
		return &driver.PathError{Op: "delete", Path: p, Err: driver.ErrNotFound}
	}
	return nil
}

// deletePrefix deletes every key starting with prefix, in DeleteObjects batches, and
// returns how many it deleted; out and err are the result of listPage(prefix, nil).
func (d *Driver) deletePrefix(ctx context.Context, prefix string, out *s3.ListObjectsV2Output, err error) (int, error) {
	deleted := 0
	for {
		if err != nil {
			return deleted, failErr(ctx, err)
		}
		if len(out.Contents) > 0 {
			ids := make([]types.ObjectIdentifier, len(out.Contents))
			for i, obj := range out.Contents {
				ids[i] = types.ObjectIdentifier{Key: obj.Key}
			}
			res, err := d.c(ctx).DeleteObjects(ctx, &s3.DeleteObjectsInput{
				Bucket: &d.bucket,
				Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
			})
			if err != nil {
				return deleted, failErr(ctx, err)
			}
			if len(res.Errors) > 0 {
				e := res.Errors[0]
				return deleted, classify(&objectError{
					key: aws.ToString(e.Key), code: aws.ToString(e.Code), message: aws.ToString(e.Message),
				})
			}
			deleted += len(ids)
		}
		if !aws.ToBool(out.IsTruncated) || out.NextContinuationToken == nil {
			return deleted, nil
		}
		out, err = d.listPage(ctx, prefix, out.NextContinuationToken)
	}
}

// listPage lists up to deleteBatch keys under prefix, from token on.
func (d *Driver) listPage(ctx context.Context, prefix string, token *string) (*s3.ListObjectsV2Output, error) {
	return d.c(ctx).ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket: &d.bucket, Prefix: &prefix, ContinuationToken: token, MaxKeys: aws.Int32(deleteBatch),
	})
}

// objectError is a per-key failure reported inside a successful DeleteObjects response.
// It implements smithy.APIError so classify maps its code like any other.
type objectError struct{ key, code, message string }

func (e *objectError) Error() string {
	return fmt.Sprintf("delete %s: %s: %s", e.key, e.code, e.message)
}
func (e *objectError) ErrorCode() string    { return e.code }
func (e *objectError) ErrorMessage() string { return e.message }

// ErrorFault is part of smithy.APIError.
func (e *objectError) ErrorFault() smithy.ErrorFault { return smithy.FaultUnknown }

// URL implements driver.Driver with a presigned GetObject.
func (d *Driver) URL(ctx context.Context, p string, expiry time.Duration) (string, error) {
	if err := driver.CheckPath(p); err != nil {
		return "", err
	}
	req, err := d.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &d.bucket, Key: aws.String(d.key(p))},
		s3.WithPresignExpires(expiry))
	if err != nil {
		return "", fail(ctx, "url", p, err)
	}
	return req.URL, nil
}

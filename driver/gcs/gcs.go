// Package gcs is the driver.Driver on Google Cloud Storage, built on the
// cloud.google.com/go/storage client over the JSON API (uploads, listings, compose, copy)
// and the XML API for reads. It also runs against fake-gcs-server, the GCS emulator.
//
// Objects are named <rootdirectory>/<path> in one bucket. Put is a single upload, which GCS
// makes visible atomically. A Writer uploads its data as temporary component objects and,
// on Commit, composes them server-side into the object (see writer.go); its session lives
// in the bucket, so any process sharing it can resume the session. The temporary objects
// sit next to the object's path under a name containing "~", a character no driver path
// may contain: List never shows them, and deleting the directory that holds an
// unfinished upload deletes them too. Copy is a server-side rewrite; URL signs a V4 URL
// when Options name a service account to sign with (SignerEmail, SignerKey).
//
// Not found: GCS answers 404 both for a missing object and for a missing bucket. Before
// reporting ErrNotFound for an object, the driver lists the bucket (one request, only on
// that path) and reports ErrMisconfigured if the bucket is missing, so ErrNotFound always
// means the bucket exists and the object does not. This needs the storage.objects.list
// permission, which a registry needs anyway.
//
// Who may import it: cmd/registryd and tests.
package gcs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/parts"
)

const (
	// defaultChunkSize is the part size when Options.ChunkSize is 0.
	defaultChunkSize = 16 << 20
	// minChunkSize and maxChunkSize bound Options.ChunkSize: parts are held in memory,
	// and tiny parts would multiply the component objects of an upload.
	minChunkSize = 256 << 10
	maxChunkSize = 1 << 30
	// defaultConcurrency is the number of parts of one Writer in flight when
	// Options.Concurrency is 0; maxConcurrency bounds it.
	defaultConcurrency = 4
	maxConcurrency     = 64
	// defaultMemoryBudget caps the bytes of part buffers across all writers of a Driver.
	defaultMemoryBudget = 128 << 20
	// deleteConcurrency bounds the parallel object deletes of a recursive Delete or of a
	// writer's clean-up.
	deleteConcurrency = 16
	// maxURLExpiry is the longest validity of a V4 signed URL.
	maxURLExpiry = 7 * 24 * time.Hour
	// hiddenMark is the character that marks the driver's own objects (writer sessions).
	// driver.ValidPath excludes it, so it never occurs in a caller's path.
	hiddenMark = "~"
)

// Driver stores objects in one Google Cloud Storage bucket. It is safe for concurrent use,
// and several processes may share the bucket.
type Driver struct {
	client *storage.Client
	// bucket retries idempotent requests itself, per retry; once tries every request once.
	// b picks one of them for a call.
	bucket     *storage.BucketHandle
	once       *storage.BucketHandle
	bucketName string
	// root maps paths to names under the configured root directory.
	root driver.Root

	chunk       int64
	concurrency int
	// budget caps the bytes of part buffers held by all writers of this Driver, and
	// recycles full-size part buffers.
	budget *parts.Budget

	// signer signs URLs; nil when the credentials hold no service account key.
	signer *signer
	// insecure is Options.InsecureURLs (a plain-http endpoint, an emulator): signed URLs use http.
	insecure bool
	// retry is the one retry policy of the driver (see New): it bounds the client's
	// retries through bucket and the driver's own loop around writer uploads and composes,
	// whose requests go through once.
	retry driver.RetryPolicy
}

// signer is what V4 URL signing needs from a service account key.
type signer struct {
	email string
	key   []byte
}

var _ driver.Driver = (*Driver)(nil)

// Options are the driver's settings. The zero value of each field is its default.
type Options struct {
	// RootDirectory is the name prefix of every object ("": the bucket root); it must be
	// a valid driver.Root.
	RootDirectory string
	// ChunkSize is the part size of writers, between 256 KiB and 1 GiB. Default 16 MiB.
	ChunkSize int64
	// Concurrency is the number of parts of one writer uploaded in parallel, between 1
	// and 64. Default 4.
	Concurrency int
	// SignerEmail and SignerKey are the service account (its client_email and PEM
	// private_key) that signs V4 URLs. Without them URL returns driver.ErrUnsupported.
	SignerEmail string
	SignerKey   []byte
	// InsecureURLs makes signed URLs plain http, for a plain-http endpoint (an
	// emulator). Default false: https.
	InsecureURLs bool
	// Retry is the one retry policy of the driver (see New); registryd passes
	// storage.retry, the policy of its driver.WithRetry. Default (zero value):
	// driver.DefaultRetryPolicy.
	Retry driver.RetryPolicy
}

// New returns a driver on bucket through client, which carries the endpoint and the
// credentials. It makes no request: a missing bucket or refused credentials surface as
// ErrMisconfigured or ErrPermission from the first operation, not here. The driver owns
// client from then on: Close closes it. Options breaking an invariant of the driver (a
// part size out of range) are refused with a plain error.
//
// Retries: requests of calls that driver.WithRetry retries (driver.RetriedByCaller) are
// tried once, so WithRetry is their only retry layer. Any other request (a Writer's, or
// any call on a driver not wrapped by WithRetry) is retried with opts.Retry: idempotent
// requests by the client, writer uploads and composes, which the client does not
// consider idempotent, by a loop of the driver around requests tried once. Either way a
// request is made at most MaxAttempts times.
func New(client *storage.Client, bucket string, opts Options) (*Driver, error) {
	if client == nil || bucket == "" {
		return nil, errors.New("gcs: a client and a bucket are required")
	}
	if strings.ContainsAny(bucket, "/ ") {
		return nil, fmt.Errorf("gcs: %q is not a bucket name", bucket)
	}
	chunk := cmp.Or(opts.ChunkSize, defaultChunkSize)
	if chunk < minChunkSize || chunk > maxChunkSize {
		return nil, fmt.Errorf("gcs: chunk size must be between %d and %d, got %d", minChunkSize, maxChunkSize, chunk)
	}
	concurrency := cmp.Or(opts.Concurrency, defaultConcurrency)
	if concurrency < 1 || concurrency > maxConcurrency {
		return nil, fmt.Errorf("gcs: concurrency must be between 1 and %d, got %d", maxConcurrency, concurrency)
	}
	root, err := driver.NewRoot(opts.RootDirectory)
	if err != nil {
		return nil, fmt.Errorf("gcs: %w", err)
	}
	d := &Driver{
		client:      client,
		bucketName:  bucket,
		root:        root,
		chunk:       chunk,
		concurrency: concurrency,
		budget:      parts.NewBudget(defaultMemoryBudget, chunk),
		insecure:    opts.InsecureURLs,
		retry:       opts.Retry,
	}
	if d.retry == (driver.RetryPolicy{}) {
		d.retry = driver.DefaultRetryPolicy()
	}
	if opts.SignerEmail != "" && len(opts.SignerKey) > 0 {
		d.signer = &signer{email: opts.SignerEmail, key: opts.SignerKey}
	}
	maxDelay := d.retry.MaxDelay
	if maxDelay <= 0 {
		maxDelay = 30 * time.Second // gax's default cap
	}
	d.bucket = client.Bucket(bucket).Retryer(
		storage.WithBackoff(gax.Backoff{Initial: max(d.retry.BaseDelay, time.Nanosecond), Max: maxDelay, Multiplier: 2}),
		storage.WithMaxAttempts(max(d.retry.MaxAttempts, 1)))
	d.once = client.Bucket(bucket).Retryer(storage.WithPolicy(storage.RetryNever))
	return d, nil
}

// b returns the bucket handle for a request made under ctx: one tried once when the
// caller retries the call (driver.RetriedByCaller), else the retrying one.
func (d *Driver) b(ctx context.Context) *storage.BucketHandle {
	if driver.RetriedByCaller(ctx) {
		return d.once
	}
	return d.bucket
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "gcs" }

// Close closes the client given to New, releasing its connections. The driver must not be used afterwards.
func (d *Driver) Close() error { return d.client.Close() }

// key returns the object name of a caller's path.
func (d *Driver) key(p string) string { return d.root.Key(p) }

// dirPrefix returns the object name prefix of the entries of directory dir ("" is the root).
func (d *Driver) dirPrefix(dir string) string { return d.root.DirPrefix(dir) }

// pathOf returns the caller's path of a object name (or prefix without its slash).
func (d *Driver) pathOf(name string) string { return d.root.PathOf(name) }

// fail wraps a classified error for op on p. If ctx has ended, the error wraps ctx.Err()
// whatever the SDK made of the cancellation, so callers can test for it.
func fail(ctx context.Context, op, p string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		// The SDK's error is context only: the call ended because ctx did.
		err = fmt.Errorf("%w (%v)", cerr, err) //nolint:errorlint // callers match ctx's error, never the SDK's
	}
	return &driver.PathError{Op: op, Path: p, Err: err}
}

// notFound classifies err from an object-level call. When it says the object does not
// exist, the bucket is listed to tell a missing object (ErrNotFound) from a missing bucket
// (ErrMisconfigured), which GCS answers with the same 404.
func (d *Driver) notFound(ctx context.Context, err error) error {
	c := classify(err)
	if !errors.Is(c, driver.ErrNotFound) {
		return c
	}
	q := &storage.Query{Prefix: d.root.Dir(), Projection: storage.ProjectionNoACL}
	if err := q.SetAttrSelection([]string{"Name"}); err != nil {
		return classifyNoObject(err)
	}
	it := d.b(ctx).Objects(ctx, q)
	it.PageInfo().MaxSize = 1
	if _, lerr := it.Next(); lerr != nil && !errors.Is(lerr, iterator.Done) {
		return classifyNoObject(lerr)
	}
	return c
}

// Stat implements driver.Driver.
func (d *Driver) Stat(ctx context.Context, p string) (driver.Info, error) {
	if err := driver.CheckCall(ctx, "stat", p); err != nil {
		return driver.Info{}, err
	}
	attrs, err := d.b(ctx).Object(d.key(p)).Attrs(ctx)
	if err != nil {
		return driver.Info{}, fail(ctx, "stat", p, d.notFound(ctx, err))
	}
	return driver.Info{Path: p, Size: attrs.Size, ModTime: attrs.Updated, Version: strconv.FormatInt(attrs.Generation, 10)}, nil
}

// Reader implements driver.Driver.
func (d *Driver) Reader(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	if err := driver.CheckCall(ctx, "reader", p); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, &driver.PathError{Op: "reader", Path: p, Err: fmt.Errorf("%w: negative offset %d", driver.ErrPreconditionFailed, offset)}
	}
	if length < 0 {
		length = -1
	}
	r, err := d.b(ctx).Object(d.key(p)).NewRangeReader(ctx, offset, length)
	if err != nil {
		c := d.notFound(ctx, err)
		if errors.Is(c, errInvalidRange) {
			// The object exists and offset is its size (callers guarantee offset <= size).
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, fail(ctx, "reader", p, c)
	}
	return &reader{r: r, p: p}, nil
}

// reader classifies the errors of a streaming read (the library reports a cut stream as
// io.ErrUnexpectedEOF, a cancelled ctx as its error, a body failing its checksum as an
// error), so no failure reaches the caller as io.EOF.
type reader struct {
	r *storage.Reader
	p string
}

func (r *reader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err != nil && !errors.Is(err, io.EOF) {
		err = &driver.PathError{Op: "read", Path: r.p, Err: classify(err)}
	}
	return n, err
}

func (r *reader) Close() error { return r.r.Close() }

// ObjectSize implements driver.SizedReader.
func (r *reader) ObjectSize() int64 { return r.r.Attrs.Size }

// Version implements driver.VersionedReader: the object's generation.
func (r *reader) Version() string {
	if g := r.r.Attrs.Generation; g != 0 {
		return strconv.FormatInt(g, 10)
	}
	return ""
}

// Put implements driver.Driver. The body is streamed in one upload request; GCS makes the
// object visible only when the request completes, so a failed or cancelled Put leaves the
// previous object (or none) in place.
func (d *Driver) Put(ctx context.Context, p string, r io.Reader, size int64) error {
	if err := driver.CheckCall(ctx, "put", p); err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := d.b(ctx).Object(d.key(p)).NewWriter(cctx)
	w.ChunkSize = 0 // one request, no buffering: Put is for small objects
	w.ContentType = "application/octet-stream"
	n, err := io.Copy(w, r)
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("%w: body has %d bytes, size says %d", driver.ErrPreconditionFailed, n, size)
	}
	if err != nil {
		// Abandon the upload (a failure of r or of the upload itself, which the library
		// reports through Write too): cancelling before Close never finalizes the object.
		cancel()
		_ = w.Close()
		return fail(ctx, "put", p, classifyNoObject(err))
	}
	if err := w.Close(); err != nil {
		return fail(ctx, "put", p, classifyNoObject(err))
	}
	return nil
}

// PutIf implements driver.Driver with a single upload under a generation precondition:
// ifGenerationMatch=0 (storage.Conditions.DoesNotExist) when ifVersion is "", else
// ifGenerationMatch=ifVersion (versions are generations). GCS checks the precondition
// when it finalizes the object, atomically; a failed one is HTTP 412, a race between two
// conditional writes may also be 409: both are ErrPreconditionFailed. An ifVersion that is
// no generation matches nothing.
func (d *Driver) PutIf(ctx context.Context, p string, r io.Reader, size int64, ifVersion string) (string, error) {
	if err := driver.CheckCall(ctx, "putif", p); err != nil {
		return "", err
	}
	b, err := driver.ReadConditionalBody(p, r, size)
	if err != nil {
		return "", err
	}
	conds := storage.Conditions{DoesNotExist: true}
	if ifVersion != "" {
		gen, err := strconv.ParseInt(ifVersion, 10, 64)
		if err != nil || gen <= 0 {
			return "", &driver.PathError{Op: "putif", Path: p, Err: fmt.Errorf("%w: %q is not a generation", driver.ErrPreconditionFailed, ifVersion)}
		}
		conds = storage.Conditions{GenerationMatch: gen}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := d.b(ctx).Object(d.key(p)).If(conds).NewWriter(cctx)
	w.ChunkSize = 0 // one request
	w.ContentType = "application/octet-stream"
	if _, err := w.Write(b); err != nil {
		cancel()
		_ = w.Close()
		return "", fail(ctx, "putif", p, classifyNoObject(err))
	}
	if err := w.Close(); err != nil {
		return "", fail(ctx, "putif", p, classifyNoObject(err))
	}
	return strconv.FormatInt(w.Attrs().Generation, 10), nil
}

// Delete implements driver.Driver.
func (d *Driver) Delete(ctx context.Context, p string) error {
	if err := driver.CheckCall(ctx, "delete", p); err != nil {
		return err
	}
	err := d.b(ctx).Object(d.key(p)).Delete(ctx)
	if err == nil {
		return nil
	}
	if c := classify(err); !errors.Is(c, driver.ErrNotFound) {
		return fail(ctx, "delete", p, c)
	}
	// No object at p: delete everything under the directory p. The listing also tells a
	// missing bucket from a missing object.
	visible, err := d.deletePrefix(ctx, d.key(p)+"/")
	if err != nil {
		return fail(ctx, "delete", p, err)
	}
	if visible == 0 {
		return &driver.PathError{Op: "delete", Path: p, Err: driver.ErrNotFound}
	}
	return nil
}

// deletePrefix deletes every object whose name begins with prefix and returns how many of
// them were caller objects (not the driver's hidden ones). Objects that vanish meanwhile
// count as deleted by someone else and are skipped.
func (d *Driver) deletePrefix(ctx context.Context, prefix string) (visible int, err error) {
	q := &storage.Query{Prefix: prefix, Projection: storage.ProjectionNoACL}
	if err := q.SetAttrSelection([]string{"Name"}); err != nil {
		return 0, classifyNoObject(err)
	}
	it := d.b(ctx).Objects(ctx, q)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deleteConcurrency)
	var mu sync.Mutex
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			_ = g.Wait()
			return 0, classifyNoObject(err)
		}
		name := attrs.Name
		g.Go(func() error {
			err := d.b(ctx).Object(name).Delete(gctx)
			if err != nil {
				if c := classify(err); !errors.Is(c, driver.ErrNotFound) {
					return c
				}
				return nil
			}
			if !strings.Contains(name[len(prefix):], hiddenMark) {
				mu.Lock()
				visible++
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return visible, nil
}

// Copy implements driver.Driver with a server-side rewrite (the library repeats the
// rewrite call until GCS reports it done).
func (d *Driver) Copy(ctx context.Context, src, dst string) error {
	if err := driver.CheckCall(ctx, "copy", src); err != nil {
		return err
	}
	if err := driver.CheckCall(ctx, "copy", dst); err != nil {
		return err
	}
	c := d.b(ctx).Object(d.key(dst)).CopierFrom(d.b(ctx).Object(d.key(src)))
	c.ContentType = "application/octet-stream"
	if _, err := c.Run(ctx); err != nil {
		return fail(ctx, "copy", src, d.notFound(ctx, err))
	}
	return nil
}

// URL implements driver.Driver: a V4 signed GET URL when the credentials hold a service
// account key, else ErrUnsupported. Expiries beyond 7 days (the V4 limit) are
// ErrUnsupported too.
func (d *Driver) URL(ctx context.Context, p string, expiry time.Duration) (string, error) {
	if err := driver.CheckCall(ctx, "url", p); err != nil {
		return "", err
	}
	if d.signer == nil {
		return "", &driver.PathError{Op: "url", Path: p, Err: fmt.Errorf("%w: the credentials hold no service account key to sign with", driver.ErrUnsupported)}
	}
	if expiry <= 0 || expiry > maxURLExpiry {
		return "", &driver.PathError{Op: "url", Path: p, Err: fmt.Errorf("%w: expiry %v outside (0, %v]", driver.ErrUnsupported, expiry, maxURLExpiry)}
	}
	u, err := d.bucket.SignedURL(d.key(p), &storage.SignedURLOptions{
		GoogleAccessID: d.signer.email,
		PrivateKey:     d.signer.key,
		Method:         "GET",
		Expires:        time.Now().Add(expiry),
		Scheme:         storage.SigningSchemeV4,
		Insecure:       d.insecure,
	})
	if err != nil {
		return "", &driver.PathError{Op: "url", Path: p, Err: fmt.Errorf("%w: sign: %w", driver.ErrMisconfigured, err)}
	}
	return u, nil
}

// Package azure is the driver.Driver on Azure Blob Storage (block blobs), built on the
// azblob SDK. It also runs against Azurite, the Azure Storage emulator.
//
// Objects are block blobs named <rootdirectory>/<path> in one container. Put and Writer
// stage blocks and commit them with one Put Block List, which makes the blob visible
// atomically; staged blocks are invisible to Stat, Reader and List until then. A Writer's
// session lives entirely in the blob's uncommitted block list (see writer.go), so any
// process sharing the account can resume it. Copy is a server-side Copy Blob; URL signs a
// read-only SAS with the account key or, with Microsoft Entra credentials, with a user
// delegation key.
//
// Who may import it: cmd/registryd and tests.
package azure

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
	"golang.org/x/sync/errgroup"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/parts"
)

const (
	// defaultChunkSize is the block size when Options.ChunkSize is 0.
	defaultChunkSize = 16 << 20
	// maxChunkSize is Azure's largest block (4000 MiB).
	maxChunkSize = 4000 << 20
	// defaultConcurrency is the number of blocks of one Writer in flight when
	// Options.Concurrency is 0.
	defaultConcurrency = 4
	// defaultMemoryBudget caps the bytes of block buffers across all writers of a Driver.
	defaultMemoryBudget = 128 << 20
	// deleteConcurrency bounds the parallel blob deletes of a recursive Delete.
	deleteConcurrency = 16
)

// Driver stores objects as block blobs in one Azure Storage container. It is safe for
// concurrent use, and several processes may share the container.
type Driver struct {
	service       *service.Client
	container     *container.Client
	containerName string
	// sharedKey signs SAS URLs; nil when a Microsoft Entra token credential is used.
	sharedKey *service.SharedKeyCredential
	// sasProtocol is https, or "https,http" when the service URL is plain http (Azurite).
	sasProtocol sas.Protocol
	// root maps paths to names under the configured root directory.
	root driver.Root

	chunk       int64
	concurrency int
	// budget caps the bytes of block buffers held by all writers of this Driver, and
	// recycles full-size block buffers.
	budget     *parts.Budget
	budgetSize int64

	// delegation caches a user delegation key for signing URLs with token credentials.
	delegation struct {
		mu      sync.Mutex
		cred    *service.UserDelegationCredential
		expires time.Time
	}
}

var _ driver.Driver = (*Driver)(nil)

// Options are the driver's settings. The zero value of each field is its default.
type Options struct {
	// RootDirectory is the name prefix of every blob ("": the container root); it must
	// be a valid driver.Root.
	RootDirectory string
	// ChunkSize is the block size of writers, at most 4000 MiB (Azure's largest block).
	// Default 16 MiB.
	ChunkSize int64
	// Concurrency is the number of blocks of one writer uploaded in parallel, at least 1.
	// Default 4.
	Concurrency int
	// MemoryBudget caps the bytes of block buffers held by all writers of the Driver;
	// raised to ChunkSize when smaller. Default 128 MiB.
	MemoryBudget int64
	// SharedKey, the account key the client signs with, signs SAS URLs. Without it
	// (Microsoft Entra token credentials) URLs are signed with a user delegation key.
	SharedKey *service.SharedKeyCredential
}

// ClientOptions returns the options the service client given to New must be built with:
// the SDK retries failed requests with the attempts and delays of p (its backoff is
// exponential with a 0.8–1.3 jitter factor, capped at MaxDelay), except requests of calls
// that driver.WithRetry retries (driver.RetriedByCaller), which are tried once, so
// WithRetry is their only retry layer. Either way a request is made at most
// p.MaxAttempts times. registryd passes storage.retry, the policy of its
// driver.WithRetry.
func ClientOptions(p driver.RetryPolicy) *service.ClientOptions {
	return &service.ClientOptions{ClientOptions: policy.ClientOptions{
		Retry:           retryOptions(p),
		PerCallPolicies: []policy.Policy{onceWhenRetriedByCaller{}},
	}}
}

// New returns a driver on the container of client, which carries the service URL and
// the credentials and must be built with ClientOptions. New makes no network call: a
// missing container or bad credentials surface as ErrMisconfigured or ErrPermission from
// the first operation, not here. Options breaking an invariant of the driver (a block
// size Azure refuses) are refused with a plain error. SAS URLs allow plain http when the
// service URL is http (Azurite).
func New(client *service.Client, containerName string, opts Options) (*Driver, error) {
	if client == nil || containerName == "" {
		return nil, errors.New("azure: a client and a container are required")
	}
	chunk := cmp.Or(opts.ChunkSize, defaultChunkSize)
	if chunk < 1 || chunk > maxChunkSize {
		return nil, fmt.Errorf("azure: chunk size must be between 1 and %d, got %d", int64(maxChunkSize), chunk)
	}
	concurrency := cmp.Or(opts.Concurrency, defaultConcurrency)
	if concurrency < 1 {
		return nil, fmt.Errorf("azure: concurrency must be positive, got %d", concurrency)
	}
	root, err := driver.NewRoot(opts.RootDirectory)
	if err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	u, err := url.Parse(client.URL())
	if err != nil {
		return nil, fmt.Errorf("azure: service URL: %w", err)
	}
	d := &Driver{
		service:       client,
		container:     client.NewContainerClient(containerName),
		containerName: containerName,
		sharedKey:     opts.SharedKey,
		sasProtocol:   sas.ProtocolHTTPS,
		root:          root,
		chunk:         chunk,
		concurrency:   concurrency,
		budgetSize:    max(cmp.Or(opts.MemoryBudget, defaultMemoryBudget), chunk),
	}
	if u.Scheme == "http" {
		d.sasProtocol = sas.ProtocolHTTPSandHTTP
	}
	d.budget = parts.NewBudget(d.budgetSize, d.chunk)
	return d, nil
}

// retryOptions returns the SDK retry options making p.MaxAttempts attempts with p's delays.
func retryOptions(p driver.RetryPolicy) policy.RetryOptions {
	ro := policy.RetryOptions{MaxRetries: -1} // the SDK's "no retries"; 0 would mean 3
	if p.MaxAttempts >= 2 {
		ro.MaxRetries = int32(min(p.MaxAttempts-1, 1<<30))
		ro.RetryDelay = max(p.BaseDelay, time.Nanosecond) // 0 would mean the SDK's 800ms
		ro.MaxRetryDelay = p.MaxDelay
		if ro.MaxRetryDelay <= 0 {
			ro.MaxRetryDelay = time.Hour // no cap beyond the doubling, as in RetryPolicy
		}
	}
	return ro
}

// onceWhenRetriedByCaller is a per-call pipeline policy: a request made for a call that
// driver.WithRetry retries is tried once (the SDK's retry policy runs after it and reads
// the override from the request's context).
type onceWhenRetriedByCaller struct{}

func (onceWhenRetriedByCaller) Do(req *policy.Request) (*http.Response, error) {
	ctx := req.Raw().Context()
	if driver.RetriedByCaller(ctx) {
		req = req.WithContext(policy.WithRetryOptions(ctx, policy.RetryOptions{MaxRetries: -1}))
	}
	return req.Next()
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "azure" }

// key returns the blob name of a caller's path.
func (d *Driver) key(p string) string { return d.root.Key(p) }

// dirPrefix returns the blob name prefix of the entries of directory dir ("" is the root).
func (d *Driver) dirPrefix(dir string) string { return d.root.DirPrefix(dir) }

// pathOf returns the caller's path of a blob name (or prefix without its slash).
func (d *Driver) pathOf(name string) string { return d.root.PathOf(name) }

func (d *Driver) blockBlob(p string) *blockblob.Client {
	return d.container.NewBlockBlobClient(d.key(p))
}

// fail wraps a classified error with the operation and path.
func fail(op, p string, err error) error {
	return &driver.PathError{Op: op, Path: p, Err: classify(err)}
}

// Stat implements driver.Driver.
func (d *Driver) Stat(ctx context.Context, p string) (driver.Info, error) {
	if err := driver.CheckCall(ctx, "stat", p); err != nil {
		return driver.Info{}, err
	}
	props, err := d.blockBlob(p).GetProperties(ctx, nil)
	if err != nil {
		return driver.Info{}, fail("stat", p, err)
	}
	fi := driver.Info{Path: p}
	if props.ContentLength != nil {
		fi.Size = *props.ContentLength
	}
	if props.LastModified != nil {
		fi.ModTime = *props.LastModified
	}
	if props.ETag != nil {
		fi.Version = string(*props.ETag)
	}
	return fi, nil
}

// Reader implements driver.Driver. The stream is one ranged GET; an error while reading
// it is classified like any other (never a silent io.EOF).
func (d *Driver) Reader(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	if err := driver.CheckCall(ctx, "reader", p); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, &driver.PathError{Op: "reader", Path: p,
			Err: fmt.Errorf("%w: negative offset %d", driver.ErrPreconditionFailed, offset)}
	}
	if length == 0 {
		if _, err := d.Stat(ctx, p); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	rng := blob.HTTPRange{Offset: offset}
	if length > 0 {
		rng.Count = length
	}
	resp, err := d.blockBlob(p).DownloadStream(ctx, &blob.DownloadStreamOptions{Range: rng})
	if err != nil {
		c := classify(err)
		if errors.Is(c, errInvalidRange) {
			// Azure refuses a range starting at the end; the contract allows offset == size.
			fi, serr := d.Stat(ctx, p)
			if serr != nil {
				return nil, serr
			}
			if offset >= fi.Size {
				return io.NopCloser(bytes.NewReader(nil)), nil
			}
		}
		return nil, &driver.PathError{Op: "reader", Path: p, Err: c}
	}
	br := &bodyReader{body: resp.Body, path: p, size: objectSize(resp.ContentRange, resp.ContentLength, offset, length)}
	if resp.ETag != nil {
		br.etag = string(*resp.ETag)
	}
	return br, nil
}

// objectSize is the whole blob's size from a ranged download's Content-Range or, for a
// read of the whole blob, its Content-Length; -1 when neither tells.
func objectSize(contentRange *string, contentLength *int64, offset, length int64) int64 {
	if contentRange != nil {
		return driver.ContentRangeSize(*contentRange)
	}
	if contentLength != nil && offset == 0 && length < 0 {
		return *contentLength
	}
	return -1
}

// bodyReader classifies the errors of a download body.
type bodyReader struct {
	body io.ReadCloser
	path string
	etag string
	size int64
}

// Version implements driver.VersionedReader: the blob's ETag.
func (r *bodyReader) Version() string { return r.etag }

// ObjectSize implements driver.SizedReader.
func (r *bodyReader) ObjectSize() int64 { return r.size }

func (r *bodyReader) Read(b []byte) (int, error) {
	n, err := r.body.Read(b)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fail("read", r.path, err)
	}
	return n, err
}

func (r *bodyReader) Close() error { return r.body.Close() }

// Put implements driver.Driver. An object that fits in one block is stored with a single
// Put Blob; a larger one is staged in blocks and committed with Put Block List. Either way
// readers see the old or the new content, never a mix.
func (d *Driver) Put(ctx context.Context, p string, r io.Reader, size int64) error {
	if err := driver.CheckCall(ctx, "put", p); err != nil {
		return err
	}
	w := d.newWriter(ctx, p, state{})
	if size >= 0 {
		// One byte more than announced, so the end of r is seen without growing the buffer.
		w.pipe.SizeHint(size + 1)
	}
	var n int64
	var err error
	if size >= 0 {
		n, err = w.ReadFrom(io.LimitReader(r, size+1))
	} else {
		n, err = w.ReadFrom(r)
	}
	if err == nil && size >= 0 && n != size {
		err = &driver.PathError{Op: "put", Path: p,
			Err: fmt.Errorf("%w: read %d bytes, want %d", driver.ErrPreconditionFailed, n, size)}
	}
	if err != nil {
		_ = w.Abort(context.WithoutCancel(ctx))
		var pe *driver.PathError
		if errors.As(err, &pe) {
			return err
		}
		// An error of r itself.
		return &driver.PathError{Op: "put", Path: p, Err: classifyReadErr(err)}
	}
	return w.Commit(ctx)
}

// classifyReadErr keeps context errors of a caller's reader and reports anything else as
// a failed precondition of the write (the body could not be read; nothing was stored).
func classifyReadErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: read body: %w", driver.ErrPreconditionFailed, err)
}

// PutIf implements driver.Driver with one Put Blob under an access condition:
// If-None-Match: * when ifVersion is "", else If-Match: ifVersion (versions are ETags).
// Azure evaluates the condition and writes atomically; it answers a failed If-Match with
// 412 ConditionNotMet and an If-None-Match: * on an existing blob with 409
// BlobAlreadyExists, both ErrPreconditionFailed here, as is If-Match on a missing blob.
func (d *Driver) PutIf(ctx context.Context, p string, r io.Reader, size int64, ifVersion string) (string, error) {
	b, err := driver.ReadConditionalBody(ctx, p, r, size)
	if err != nil {
		return "", err
	}
	cond := &blob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)}
	if ifVersion != "" {
		cond = &blob.ModifiedAccessConditions{IfMatch: to.Ptr(azcore.ETag(ifVersion))}
	}
	sum := md5.Sum(b)
	resp, err := d.blockBlob(p).Upload(ctx, streaming.NopCloser(bytes.NewReader(b)), &blockblob.UploadOptions{
		TransactionalValidation: blob.TransferValidationTypeMD5(sum[:]),
		AccessConditions:        &blob.AccessConditions{ModifiedAccessConditions: cond},
	})
	if err != nil {
		cerr := classify(err)
		if errors.Is(cerr, driver.ErrNotFound) {
			cerr = fmt.Errorf("%w: no blob, want version %s: %w", driver.ErrPreconditionFailed, ifVersion, err)
		}
		return "", &driver.PathError{Op: "putif", Path: p, Err: cerr}
	}
	return etagString(resp.ETag), nil
}

// Delete implements driver.Driver: it deletes the blob at p (with its snapshots) or, if
// there is none, every blob under p + "/".
func (d *Driver) Delete(ctx context.Context, p string) error {
	if err := driver.CheckCall(ctx, "delete", p); err != nil {
		return err
	}
	_, err := d.blockBlob(p).Delete(ctx, &blob.DeleteOptions{DeleteSnapshots: to.Ptr(blob.DeleteSnapshotsOptionTypeInclude)})
	if err == nil {
		return nil
	}
	if c := classify(err); !errors.Is(c, driver.ErrNotFound) {
		return &driver.PathError{Op: "delete", Path: p, Err: c}
	}
	n, err := d.deletePrefix(ctx, d.key(p)+"/")
	if err != nil {
		return &driver.PathError{Op: "delete", Path: p, Err: err}
	}
	if n == 0 {
		return &driver.PathError{Op: "delete", Path: p, Err: driver.ErrNotFound}
	}
	return nil
}

// deletePrefix deletes every blob whose name starts with prefix and returns how many it
// found. Blobs deleted concurrently by someone else count as found.
func (d *Driver) deletePrefix(ctx context.Context, prefix string) (int, error) {
	pager := d.container.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &prefix})
	n := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return n, classify(err)
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(deleteConcurrency)
		for _, item := range page.Segment.BlobItems {
			if item.Name == nil {
				continue
			}
			n++
			name := *item.Name
			g.Go(func() error {
				_, err := d.container.NewBlobClient(name).Delete(gctx,
					&blob.DeleteOptions{DeleteSnapshots: to.Ptr(blob.DeleteSnapshotsOptionTypeInclude)})
				if c := classify(err); c != nil && !errors.Is(c, driver.ErrNotFound) {
					return c
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Copy implements driver.Driver with a server-side Copy Blob, waiting until the service
// reports the copy finished. The source is checked first so a missing source is
// ErrNotFound (the copy's own error does not say which side is missing).
func (d *Driver) Copy(ctx context.Context, src, dst string) error {
	if err := driver.CheckCall(ctx, "copy", src); err != nil {
		return err
	}
	if err := driver.CheckPath(dst); err != nil {
		return err
	}
	if _, err := d.Stat(ctx, src); err != nil {
		return err
	}
	_, err := d.copyBlob(ctx, src, dst)
	return err
}

// copyBlob copies the blob at src to dst as Copy does, without checking src first, and
// returns the new blob's ETag (its Info.Version).
func (d *Driver) copyBlob(ctx context.Context, src, dst string) (string, error) {
	srcURL, err := d.copySource(src)
	if err != nil {
		return "", fail("copy", src, err)
	}
	dstBlob := d.blockBlob(dst)
	resp, err := dstBlob.StartCopyFromURL(ctx, srcURL, nil)
	if err != nil {
		return "", fail("copy", dst, err)
	}
	status, desc, etag := blob.CopyStatusTypeSuccess, "", resp.ETag
	if resp.CopyStatus != nil {
		status = *resp.CopyStatus
	}
	// Copies inside one account usually finish at once; poll while the service says pending.
	for delay := 50 * time.Millisecond; status == blob.CopyStatusTypePending; delay = min(2*delay, 2*time.Second) {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", &driver.PathError{Op: "copy", Path: dst, Err: ctx.Err()}
		case <-t.C:
		}
		props, err := dstBlob.GetProperties(ctx, nil)
		if err != nil {
			return "", fail("copy", dst, err)
		}
		status, etag = blob.CopyStatusTypeSuccess, props.ETag
		if props.CopyStatus != nil {
			status = *props.CopyStatus
		}
		if props.CopyStatusDescription != nil {
			desc = *props.CopyStatusDescription
		}
	}
	if status != blob.CopyStatusTypeSuccess {
		return "", &driver.PathError{Op: "copy", Path: dst,
			Err: fmt.Errorf("%w: copy %s: %s", driver.ErrUnavailable, status, desc)}
	}
	if etag == nil {
		return "", nil
	}
	return string(*etag), nil
}

// copySource returns the URL Copy Blob reads the source from: with the account key a
// short-lived read SAS is attached (required when the source is not public); with token
// credentials the plain URL, which the service authorizes for a source in the same account.
func (d *Driver) copySource(src string) (string, error) {
	u := d.blockBlob(src).URL()
	if d.sharedKey == nil {
		return u, nil
	}
	qp, err := d.sasValues(src, time.Hour).SignWithSharedKey(d.sharedKey)
	if err != nil {
		return "", err
	}
	return u + "?" + qp.Encode(), nil
}

func (d *Driver) sasValues(p string, expiry time.Duration) sas.BlobSignatureValues {
	now := time.Now().UTC()
	return sas.BlobSignatureValues{
		Protocol:      d.sasProtocol,
		StartTime:     now.Add(-5 * time.Minute), // tolerate clock skew
		ExpiryTime:    now.Add(expiry),
		Permissions:   (&sas.BlobPermissions{Read: true}).String(),
		ContainerName: d.containerName,
		BlobName:      d.key(p),
	}
}

// URL implements driver.Driver: a read-only SAS URL, signed with the account key or, with
// token credentials, with a user delegation key (cached, renewed before it expires). When
// the identity may not obtain a user delegation key, URL returns ErrUnsupported so callers
// stream the object instead.
func (d *Driver) URL(ctx context.Context, p string, expiry time.Duration) (string, error) {
	if err := driver.CheckCall(ctx, "url", p); err != nil {
		return "", err
	}
	if expiry <= 0 {
		return "", &driver.PathError{Op: "url", Path: p,
			Err: fmt.Errorf("%w: expiry %v", driver.ErrPreconditionFailed, expiry)}
	}
	values := d.sasValues(p, expiry)
	var qp sas.QueryParameters
	var err error
	if d.sharedKey != nil {
		qp, err = values.SignWithSharedKey(d.sharedKey)
	} else {
		var cred *service.UserDelegationCredential
		cred, err = d.delegationCredential(ctx, values.ExpiryTime)
		if err != nil {
			c := classify(err)
			if errors.Is(c, driver.ErrPermission) {
				c = fmt.Errorf("%w: no user delegation key: %w", driver.ErrUnsupported, err)
			}
			return "", &driver.PathError{Op: "url", Path: p, Err: c}
		}
		qp, err = values.SignWithUserDelegation(cred)
	}
	if err != nil {
		return "", fail("url", p, err)
	}
	return d.blockBlob(p).URL() + "?" + qp.Encode(), nil
}

// delegationCredential returns a user delegation key valid at least until `until`.
func (d *Driver) delegationCredential(ctx context.Context, until time.Time) (*service.UserDelegationCredential, error) {
	dl := &d.delegation
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.cred != nil && dl.expires.After(until.Add(time.Minute)) {
		return dl.cred, nil
	}
	now := time.Now().UTC()
	// Keys live up to 7 days; ask for a day beyond the URL's expiry so one key serves many.
	expires := until.Add(24 * time.Hour)
	if limit := now.Add(7*24*time.Hour - time.Minute); expires.After(limit) {
		expires = limit
	}
	info := service.KeyInfo{
		Start:  to.Ptr(now.Add(-5 * time.Minute).Format(sas.TimeFormat)),
		Expiry: to.Ptr(expires.Format(sas.TimeFormat)),
	}
	cred, err := d.service.GetUserDelegationCredential(ctx, info, nil)
	if err != nil {
		return nil, err
	}
	dl.cred, dl.expires = cred, expires
	return cred, nil
}

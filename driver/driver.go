// Package driver defines the storage driver contract of registryd: a small interface over an
// object store (filesystem, in-memory, S3, GCS, Azure Blob) that knows only slash-separated
// object paths and bytes, never repositories or manifests.
//
// Who may import it: package storage (which gives the objects registry meaning), the concrete
// drivers under driver/, driver/testsuite and cmd/registryd. Handlers never import it.
//
// # Paths
//
// A path is a slash-separated key such as "docker/registry/v2/blobs/sha256/ab/abcd/data". It never
// begins or ends with "/", contains no empty, "." or ".." segments, and uses only the characters
// of [ValidPath]. Drivers prefix their configured root directory themselves. A "directory" is
// any path that is a proper prefix (up to a "/") of an object's path; directories are implicit and
// exist exactly as long as an object lies under them.
//
// # Errors
//
// Every method reports failures by wrapping exactly one of the sentinel errors below with %w and
// context (the operation and the path), so callers decide with errors.Is. The contract that
// matters most: an error wraps [ErrNotFound] only when the backend has positively answered that
// the object does not exist. A missing bucket, a denied request, a timeout, a throttle, a 5xx,
// a DNS or TLS failure, a cancelled context are never ErrNotFound. Context errors
// (context.Canceled, context.DeadlineExceeded) are passed through so errors.Is still matches them.
package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors of the driver contract. Drivers wrap them (fmt.Errorf("stat %s: %w", p, ErrNotFound));
// callers test them with errors.Is.
var (
	// ErrNotFound: the backend positively answered that the object (or, for Delete, anything
	// under the path) does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrThrottled: the backend asked us to slow down (S3 SlowDown, HTTP 429/503 ServerBusy)
	// and the SDK's own retries were exhausted.
	ErrThrottled = errors.New("backend throttled the request")
	// ErrUnavailable: the backend could not be reached or failed (refused connection, reset,
	// timeout, DNS, TLS, HTTP 5xx).
	ErrUnavailable = errors.New("backend unavailable")
	// ErrPermission: the backend refused our credentials (HTTP 401/403, bad signature, unknown key).
	ErrPermission = errors.New("backend denied access")
	// ErrMisconfigured: the configuration points at something that does not exist or cannot
	// work (no such bucket or container, malformed endpoint), or the backend refused a
	// request for good with a 4xx the driver does not recognise: not transient, so never
	// retried (every cloud driver classifies such statuses alike, see
	// driver/internal/httpstatus).
	ErrMisconfigured = errors.New("backend misconfigured")
	// ErrPreconditionFailed: a write's precondition does not hold: PutIf found another
	// version (or an object where it wanted none), or Writer was given a resume state that
	// the backend has already moved past (a replayed, stale or concurrently used state).
	// Nothing was changed.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrUnsupported: the driver does not offer this operation (for example URL on the
	// filesystem driver).
	ErrUnsupported = errors.New("operation not supported by driver")
	// ErrInvalidPath: the path does not satisfy ValidPath. Returned before any backend call.
	ErrInvalidPath = errors.New("invalid path")
)

// ValidPath matches the paths drivers accept: slash-separated segments of [A-Za-z0-9._-],
// no leading or trailing slash, no empty segment. Segments "." and ".." are rejected by
// CheckPath in addition.
var validPath = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$`)

// CheckPath returns an error wrapping ErrInvalidPath unless p is a valid object path.
// Drivers call it first in every method that takes a path.
func CheckPath(p string) error {
	if !validPath.MatchString(p) {
		return &PathError{Op: "check", Path: p, Err: ErrInvalidPath}
	}
	for i, start := 0, 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if seg := p[start:i]; seg == "." || seg == ".." {
				return &PathError{Op: "check", Path: p, Err: ErrInvalidPath}
			}
			start = i + 1
		}
	}
	return nil
}

// CheckCall is the common start of every driver method: it returns an error wrapping
// ErrInvalidPath for an invalid path, or ctx's error (in a *PathError for op and p) when ctx
// is already done, before any backend call.
func CheckCall(ctx context.Context, op, p string) error {
	if err := CheckPath(p); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return &PathError{Op: op, Path: p, Err: err}
	}
	return nil
}

// sentinels lists the contract's error classes.
var sentinels = [...]error{ErrNotFound, ErrThrottled, ErrUnavailable, ErrPermission,
	ErrMisconfigured, ErrPreconditionFailed, ErrUnsupported, ErrInvalidPath}

// Classified reports whether err is already a context error or wraps one of the contract's
// sentinels, so that a driver's classify returns it unchanged.
func Classified(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// PathError records a failed operation on a path. It unwraps to the sentinel (or context
// error) describing the failure.
type PathError struct {
	Op   string // the driver method, e.g. "stat"
	Path string // the object path as given by the caller
	Err  error  // wraps one of the sentinels, or a context error
}

// Error implements error.
func (e *PathError) Error() string { return e.Op + " " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the underlying classified error.
func (e *PathError) Unwrap() error { return e.Err }

// Info describes an object or, in List results, an implicit directory.
type Info struct {
	// Path is the object's path as the caller names it (without the driver's root directory).
	Path string
	// Size is the object's length in bytes; 0 for directories.
	Size int64
	// ModTime is the last modification time as reported by the backend; zero for directories.
	ModTime time.Time
	// IsDir reports an implicit directory (a common prefix) in List results.
	IsDir bool
	// Version identifies this content of the object: it changes whenever the object is
	// replaced or altered (S3 and Azure ETag, GCS generation, a file's identity and
	// modification time). Stat sets it when the backend reports one; "" means unknown.
	// List results need not set it.
	Version string
}

// VersionedReader is implemented by the stream Driver.Reader returns when the backend
// says which version of the object it is streaming: Version is the value Stat reports as
// Info.Version for that content, or "" when unknown. Wrapping drivers pass it through.
type VersionedReader interface {
	io.ReadCloser
	Version() string
}

// ReaderVersion returns rc's Version if rc is a VersionedReader, else "".
func ReaderVersion(rc io.Reader) string {
	if v, ok := rc.(VersionedReader); ok {
		return v.Version()
	}
	return ""
}

// WithVersion returns rc as a VersionedReader reporting version.
func WithVersion(rc io.ReadCloser, version string) VersionedReader {
	return versioned{rc, version}
}

type versioned struct {
	io.ReadCloser
	v string
}

func (v versioned) Version() string { return v.v }

// SizedReader is implemented by the stream Driver.Reader returns when the backend says
// how large the whole object is (not just the range being read): ObjectSize is the value
// Stat reports as Info.Size for that content, or -1 when unknown. It lets a caller that
// reads a whole object learn its size without a Stat first. Wrapping drivers pass it
// through.
type SizedReader interface {
	io.ReadCloser
	ObjectSize() int64
}

// ReaderSize returns rc's ObjectSize if rc is a SizedReader, else -1.
func ReaderSize(rc io.Reader) int64 {
	if s, ok := rc.(SizedReader); ok {
		return s.ObjectSize()
	}
	return -1
}

// WithVersionAndSize returns rc as a VersionedReader and SizedReader reporting version and
// the object's size.
func WithVersionAndSize(rc io.ReadCloser, version string, size int64) io.ReadCloser {
	return sized{versioned{rc, version}, size}
}

type sized struct {
	versioned
	n int64
}

func (s sized) ObjectSize() int64 { return s.n }

// Driver stores opaque objects under slash-separated paths. Implementations are safe for
// concurrent use. Every method honours ctx: when it is cancelled the method returns promptly
// with an error for which errors.Is(err, ctx.Err()) holds.
type Driver interface {
	// Name returns a short identifier of the backend ("filesystem", "s3", ...) for logs.
	Name() string

	// Stat returns the object's Info. It returns ErrNotFound if there is no object at path
	// (a directory is not an object: Stat of a pure prefix is ErrNotFound).
	Stat(ctx context.Context, path string) (Info, error)

	// Reader streams the object's bytes from offset; length < 0 means to the end, otherwise
	// at most length bytes. Callers guarantee 0 <= offset <= size; offset == size yields an
	// empty stream. It returns ErrNotFound if there is no object at path. An error while
	// streaming is returned by Read, never silently as io.EOF.
	Reader(ctx context.Context, path string, offset, length int64) (io.ReadCloser, error)

	// Put stores a small object atomically: readers see either the previous content or all
	// of the new content, never a part. size is the exact length of r, or -1 if unknown.
	// It overwrites any existing object.
	Put(ctx context.Context, path string, r io.Reader, size int64) error

	// PutIf is Put made conditional on the object's current version: with ifVersion == ""
	// it stores only if no object exists at path; otherwise only if the object's current
	// Info.Version equals ifVersion (an absent object never matches). It returns the
	// Version of the object it stored (the value a later Stat reports, until the object
	// changes; "" only if the backend's answer names none). When the condition
	// does not hold it returns an error wrapping ErrPreconditionFailed and changes nothing.
	//
	// The comparison and the write are one atomic step of the backend (S3 and Azure
	// If-None-Match/If-Match on the ETag, GCS generation preconditions, a per-object lock
	// on the filesystem), never a Stat followed by a Put: of several PutIf calls racing
	// from the same version (or for the same absent path), from any processes sharing
	// the backend, exactly one succeeds. Versions differ between successive writes of
	// different content; S3's ETag is the content's MD5, so rewriting identical bytes may
	// repeat a version there: callers that must tell writes apart put something unique in
	// the content (the lease of package storage carries an epoch).
	//
	// PutIf is for small records (leases, markers): the body is read into memory, and
	// one larger than MaxConditionalSize is refused with ErrUnsupported. size is the exact
	// length of r, or -1 if unknown.
	//
	// Retries: an attempt whose answer was lost (a timeout or reset after the backend
	// applied the write) looks like a failure, and repeating it then reports
	// ErrPreconditionFailed, because the first attempt changed the version. A caller that
	// sees ErrPreconditionFailed after a retry (WithRetry retries PutIf) and must know
	// whether its write landed reads the object back (Stat, Reader) and recognises its own
	// content.
	PutIf(ctx context.Context, path string, r io.Reader, size int64, ifVersion string) (version string, err error)

	// Delete removes the object at path, or if there is none, every object under the
	// directory path. It returns ErrNotFound if nothing existed at or under path.
	Delete(ctx context.Context, path string) error

	// List returns the entries directly under directory dir (objects and implicit
	// subdirectories, the latter with IsDir set), sorted by Path in byte order, starting
	// strictly after the path `after` (when non-empty) and at most limit entries (limit <= 0:
	// all). A directory with no entries yields an empty slice and nil: List never returns
	// ErrNotFound. dir == "" lists the root. `after` is compared with the entries' paths
	// as a string: it need not name an entry, nor be a valid path ("dir/b~" lists from the
	// first name after every name beginning with "b").
	List(ctx context.Context, dir, after string, limit int) ([]Info, error)

	// Copy copies the object at src to dst inside the backend, without streaming the bytes
	// through this process where the backend can avoid it. It overwrites dst atomically and
	// returns ErrNotFound if src does not exist.
	Copy(ctx context.Context, src, dst string) error

	// Writer starts (resume == nil) or resumes a resumable write of the object at path.
	// Bytes written become readable at path only after Commit. resume is a state returned
	// by an earlier Writer.State for the same path, possibly by another process sharing
	// the backend.
	//
	// Acknowledgement: only State acknowledges bytes. Bytes a writer wrote after its last
	// State (a request that failed or was cancelled mid-stream, a crashed process) are not
	// acknowledged: resuming from the latest acknowledged state succeeds, with Size equal to
	// that state's size, and the unacknowledged bytes are discarded (overwritten or
	// ignored; they must never appear in the committed object). Resuming from a state that a
	// later State call has superseded (a replayed or stale state) returns
	// ErrPreconditionFailed and changes nothing: the backend's record wins. If the backend
	// has no record of the session (never started, committed, aborted), Writer returns
	// ErrNotFound. A malformed resume state (not produced by this driver in this format:
	// truncated, altered, from another backend or an older state format) names no session
	// the driver could find, and returns ErrNotFound too, on every driver: storage answers
	// it 404 BLOB_UPLOAD_UNKNOWN, so the client starts over instead of retrying a state
	// that can never resume.
	//
	// ctx bounds the writer's whole life: every backend call the writer makes, including
	// background part uploads, uses it; when ctx is cancelled before State or Commit, the
	// session is left as of its last State.
	Writer(ctx context.Context, path string, resume []byte) (Writer, error)

	// URL returns a URL from which an HTTP client can GET the object until expiry, or an
	// error wrapping ErrUnsupported when the driver cannot sign URLs. It does not check
	// that the object exists.
	URL(ctx context.Context, path string, expiry time.Duration) (string, error)
}

// Writer is a resumable, streaming write session created by Driver.Writer. It is not safe
// for concurrent use. Exactly one of State, Commit or Abort ends its use in this process;
// any call after that returns an error.
type Writer interface {
	// Write appends p. It may buffer up to the driver's part size and upload full parts in
	// the background; memory stays bounded whatever the total size. An error from a
	// background upload is returned by a later Write, State or Commit.
	io.Writer

	// Size returns the number of bytes written in this session, including those written
	// before the state it resumed from.
	Size() int64

	// State makes every byte written so far durable in the backend (not in this process)
	// and returns a small (well under 512 bytes) opaque state from which Driver.Writer can
	// resume the session in any process sharing the backend.
	State(ctx context.Context) ([]byte, error)

	// Commit makes all bytes written readable at the writer's path (atomically replacing
	// any object there) and releases the session's backend resources. Committing an empty
	// session creates a zero-byte object.
	Commit(ctx context.Context) error

	// Abort discards the session and everything it wrote; the object at path (if any) is
	// unchanged. Aborting a session whose backend record is already gone returns nil.
	Abort(ctx context.Context) error
}

// CommitterTo is implemented by Writers that can commit their bytes at a path other than
// the one they were opened for at less cost than Commit followed by Driver.Copy: a
// session that never filled a part is uploaded straight to the other path, parts are
// composed or renamed into it.
type CommitterTo interface {
	// CommitTo is Commit with the bytes made readable at dst (atomically replacing any
	// object there) instead of at the writer's path, where nothing is created; dst may
	// also be the writer's own path. Like Commit it releases the session's backend
	// resources and ends the writer's use; a session the backend no longer knows is
	// ErrNotFound. version is the new object's Info.Version, so the caller need not Stat
	// the object to learn it; only a wrapper whose inner Writer has no CommitTo (see
	// driver/fault) reports "".
	CommitTo(ctx context.Context, dst string) (version string, err error)
}

// CommitTo commits w, a Writer of d opened at src, so that its bytes become readable at
// dst: with w.CommitTo when w implements CommitterTo, else with Commit and (unless dst is
// src) a Driver.Copy from src to dst, which leaves the committed object at src for the
// caller to remove; that way reports no version.
func CommitTo(ctx context.Context, d Driver, w Writer, src, dst string) (version string, err error) {
	if c, ok := w.(CommitterTo); ok {
		return c.CommitTo(ctx, dst)
	}
	if err := w.Commit(ctx); err != nil || dst == src {
		return "", err
	}
	return "", d.Copy(ctx, src, dst)
}

// SessionPurger is implemented by drivers that keep Writer sessions outside the objects
// of a directory, where deleting the directory does not reach them (S3's incomplete
// multipart uploads).
type SessionPurger interface {
	// PurgeSessions discards every Writer session of the object at path: resuming one
	// afterwards is ErrNotFound. A committed object at path is untouched.
	PurgeSessions(ctx context.Context, path string) error
}

// PurgeSessions discards the Writer sessions of the object at path when d implements
// SessionPurger; the other drivers keep sessions in objects next to path, which deleting
// its directory discards, so for them it does nothing.
func PurgeSessions(ctx context.Context, d Driver, path string) error {
	if p, ok := d.(SessionPurger); ok {
		return p.PurgeSessions(ctx, path)
	}
	return nil
}

// MaxConditionalSize is the largest body Driver.PutIf accepts.
const MaxConditionalSize = 4 << 20

// ReadConditionalBody begins a driver's PutIf on path: it checks the call (CheckCall:
// the path, then ctx), then reads the body into memory: exactly size bytes when size >=
// 0, else everything up to EOF. A body larger than MaxConditionalSize is refused with
// ErrUnsupported before it is read; a body whose length differs from size, or that fails
// to read, with ErrUnavailable (a context error of the reader is passed through).
func ReadConditionalBody(ctx context.Context, path string, r io.Reader, size int64) ([]byte, error) {
	if err := CheckCall(ctx, "putif", path); err != nil {
		return nil, err
	}
	if size > MaxConditionalSize {
		return nil, &PathError{Op: "putif", Path: path, Err: fmt.Errorf("%w: conditional write of %d bytes, at most %d", ErrUnsupported, size, MaxConditionalSize)}
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxConditionalSize+1))
	switch {
	case err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return nil, &PathError{Op: "putif", Path: path, Err: err}
	case err != nil:
		return nil, &PathError{Op: "putif", Path: path, Err: fmt.Errorf("%w: reading body: %w", ErrUnavailable, err)}
	case len(b) > MaxConditionalSize:
		return nil, &PathError{Op: "putif", Path: path, Err: fmt.Errorf("%w: conditional write of more than %d bytes", ErrUnsupported, MaxConditionalSize)}
	case size >= 0 && int64(len(b)) != size:
		return nil, &PathError{Op: "putif", Path: path, Err: fmt.Errorf("%w: body of %d bytes, size says %d: %w", ErrUnavailable, len(b), size, io.ErrUnexpectedEOF)}
	}
	return b, nil
}

// ContentRangeSize returns the complete length of an HTTP Content-Range header value
// ("bytes 0-99/1234" is 1234), or -1 when it is absent or unknown ("*").
func ContentRangeSize(v string) int64 {
	i := strings.LastIndexByte(v, '/')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v[i+1:]), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

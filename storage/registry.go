package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	regerr "github.com/registryd/registryd/errors"
)

// Options configures a Registry. The zero value of each field is a documented default.
type Options struct {
	// Secret signs upload state tokens; every replica sharing a backend needs the same one.
	// Required, at least 16 bytes.
	Secret []byte
	// Redirect makes BlobURL return backend pre-signed URLs when the driver can sign.
	Redirect bool
	// RedirectExpiry is the lifetime of a pre-signed URL (default 20 minutes).
	RedirectExpiry time.Duration
	// UploadExpiry bounds the age of an upload token (default 7 days).
	UploadExpiry time.Duration
	// ReadRetries bounds how often a blob read that breaks mid-stream is resumed with a
	// ranged read (default 3).
	ReadRetries int
	// AllowSparse accepts manifests whose layers or index children are missing from the
	// repository (the config blob is still required).
	AllowSparse bool
	// TouchOnHead makes a blob HEAD that finds the blob write its garbage collection push
	// marker, so a blob a pusher found is not swept before its manifest is pushed (see
	// gc_protect.go). Worth it where a collector runs; without it such a push may fail
	// with MANIFEST_BLOB_UNKNOWN (and is retried by the client with an upload).
	TouchOnHead bool
	// Collected makes every push protect itself against a concurrent garbage collector
	// from the start (set it on replicas that run one). Without it, a Registry finds out
	// in the background whether its bucket is or was ever garbage collected, and pushes
	// skip that protection until it is (see gc_protect.go).
	Collected bool
	// GCAnnounce is how long the first garbage collection run on a bucket waits after
	// announcing itself before it deletes anything (default DefaultGCAnnounce). Replicas
	// check for the announcement every GCAnnounce/4 and trust an answer for GCAnnounce/2:
	// every replica and every collector sharing the bucket must use the same value.
	GCAnnounce time.Duration
	// Logger receives warnings about best-effort clean-up failures (default: discard).
	Logger *slog.Logger
}

// Registry implements registry semantics over a driver. It is safe for concurrent use and
// holds no per-request state: every replica sharing the backend and the secret is
// interchangeable.
type Registry struct {
	d        driver.Driver
	opts     Options
	verified *verifiedSet
	// collected tracks whether the bucket is garbage collected (gc_collected.go).
	collected *collectedState
}

// New returns a Registry over d.
func New(d driver.Driver, opts Options) (*Registry, error) {
	if d == nil {
		return nil, errors.New("storage: nil driver")
	}
	if len(opts.Secret) < 16 {
		return nil, errors.New("storage: secret must be at least 16 bytes")
	}
	if opts.RedirectExpiry == 0 {
		opts.RedirectExpiry = 20 * time.Minute
	}
	if opts.UploadExpiry == 0 {
		opts.UploadExpiry = 7 * 24 * time.Hour
	}
	if opts.ReadRetries == 0 {
		opts.ReadRetries = 3
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.GCAnnounce < 0 {
		return nil, fmt.Errorf("storage: negative GC announce period %s", opts.GCAnnounce)
	}
	if opts.GCAnnounce == 0 {
		opts.GCAnnounce = DefaultGCAnnounce
	}
	return &Registry{d: d, opts: opts, verified: newVerifiedSet(verifiedCapacity),
		collected: newCollectedState(opts.GCAnnounce, opts.Collected)}, nil
}

// Ping checks that the backend answers: a Stat of a probe object that need not exist.
// ErrNotFound counts as healthy; any other error is returned.
func (r *Registry) Ping(ctx context.Context) error {
	_, err := r.d.Stat(ctx, rootPrefix+"/readiness-probe")
	if err == nil || errors.Is(err, driver.ErrNotFound) {
		return nil
	}
	return err
}

// notFound returns d (wrapping err) if err is a driver ErrNotFound, else err wrapped with
// context. This is the one place a driver NotFound becomes a client-visible 404 condition.
func notFound(err error, d regerr.Descriptor, detail any, context string) error {
	if errors.Is(err, driver.ErrNotFound) {
		return d.WithDetail(detail).WithCause(err)
	}
	return fmt.Errorf("%s: %w", context, err)
}

// errCorruptLink reports a link object that does not hold a digest.
var errCorruptLink = errors.New("corrupt link")

// readLink reads a link object and parses the digest it holds.
func (r *Registry) readLink(ctx context.Context, p string) (digest.Digest, error) {
	rc, err := r.d.Reader(ctx, p, 0, -1)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1024))
	if err != nil {
		return "", err
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("%w %s: %w", errCorruptLink, p, err)
	}
	return d, nil
}

func (r *Registry) putLink(ctx context.Context, p string, d digest.Digest) error {
	return r.d.Put(ctx, p, strings.NewReader(d.String()), int64(len(d.String())))
}

// RepositoryExists reports whether anything is stored under the repository.
func (r *Registry) RepositoryExists(ctx context.Context, name string) (bool, error) {
	l, err := r.d.List(ctx, repoDir(name), "", 1)
	if err != nil {
		return false, fmt.Errorf("list repository %s: %w", name, err)
	}
	return len(l) > 0, nil
}

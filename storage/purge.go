package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/registryd/registryd/driver"
)

// PurgeUploads removes the uploads of every repository that were started before cutoff
// (by the time in their marker), and the upload directories without a marker whose
// objects were all written before cutoff (what a failed clean-up left behind; every
// request with their token is BLOB_UPLOAD_UNKNOWN already): first the backend's write
// sessions of their data (S3's incomplete multipart uploads), then every object under
// their directory. A client still holding a purged upload's token gets
// BLOB_UPLOAD_UNKNOWN. With dryRun nothing is removed. It returns how many uploads it
// removed (or would have); a failure on one upload does not stop the others, and the
// first failure is returned.
func (r *Registry) PurgeUploads(ctx context.Context, cutoff time.Time, dryRun bool) (int, error) {
	n := 0
	var first error
	for repo, err := range r.Repositories(ctx, "") {
		if err != nil {
			return n, fmt.Errorf("purge uploads: %w", err)
		}
		k, err := r.purgeRepoUploads(ctx, repo, cutoff, dryRun)
		n += k
		if err != nil && first == nil {
			first = err
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
	}
	return n, first
}

// purgeRepoUploads is PurgeUploads for the uploads of one repository.
func (r *Registry) purgeRepoUploads(ctx context.Context, repo string, cutoff time.Time, dryRun bool) (int, error) {
	ids, err := r.subdirs(ctx, repoDir(repo)+"/_uploads")
	if err != nil {
		return 0, err
	}
	n := 0
	var first error
	for _, id := range ids {
		old, err := r.uploadExpired(ctx, repo, id, cutoff)
		if err == nil && old {
			n++
			if !dryRun {
				err = r.purgeUpload(ctx, repo, id)
			}
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return n, first
}

// uploadExpired reports whether the upload was started before cutoff or, without a
// marker, whether its directory holds something and nothing written since cutoff.
func (r *Registry) uploadExpired(ctx context.Context, repo, id string, cutoff time.Time) (bool, error) {
	p := uploadStartedPath(repo, id)
	rc, err := r.d.Reader(ctx, p, 0, -1)
	if errors.Is(err, driver.ErrNotFound) {
		l, err := r.d.List(ctx, uploadDir(repo, id), "", 0)
		if err != nil {
			return false, fmt.Errorf("list %s: %w", uploadDir(repo, id), err)
		}
		for _, fi := range l {
			if !fi.IsDir && !fi.ModTime.Before(cutoff) {
				return false, nil
			}
		}
		return len(l) > 0, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 256))
	if err != nil {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	started, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		// Not a marker this registry wrote (a corrupt one, or another format): its age
		// is unknown, so it is left alone.
		r.opts.Logger.WarnContext(ctx, "upload purging: unreadable upload marker", "path", p, "error", err)
		return false, nil
	}
	return started.Before(cutoff), nil
}

// purgeUpload removes an upload: the marker first (from then on the upload is unknown to
// every replica), then the backend sessions of its data, then everything else.
func (r *Registry) purgeUpload(ctx context.Context, repo, id string) error {
	if err := r.d.Delete(ctx, uploadStartedPath(repo, id)); err != nil && !errors.Is(err, driver.ErrNotFound) {
		return fmt.Errorf("purge upload %s: %w", id, err)
	}
	if err := driver.PurgeSessions(ctx, r.d, uploadDataPath(repo, id)); err != nil {
		return fmt.Errorf("purge upload %s sessions: %w", id, err)
	}
	if err := r.d.Delete(ctx, uploadDir(repo, id)); err != nil && !errors.Is(err, driver.ErrNotFound) {
		return fmt.Errorf("purge upload %s: %w", id, err)
	}
	return nil
}

package filesystem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/registryd/registryd/driver"
)

// Conditional writes (PutIf) must be atomic across every process sharing the root
// directory (several replicas on one volume), so they cannot rely on a mutex:
//
//   - create-if-absent links the new file into place with link(2), which fails with EEXIST
//     when anything exists at the path: the check and the write are one system call;
//   - replace-if-version takes an exclusive flock(2) on the path's lock stripe, compares
//     the current file's version, and renames the new file over it. Every other change of
//     a single object (Put, Copy, a Writer's Commit, Delete of an object) renames or
//     removes under the same stripe lock, so nothing can replace the file between the
//     comparison and the rename.
//
// Lock stripes are lockStripes files under "~locks" at the root (the "~" keeps them out of
// every listing); a path's stripe is a hash of the path. Each call opens the stripe file
// anew, so the lock also excludes goroutines of one process (flock locks belong to an
// open file description). A recursive Delete of a directory removes the files under it
// without their locks: it is not ordered against a PutIf under that directory. On NFS,
// Linux emulates flock with POSIX byte-range locks, which the server arbitrates.
//
// Plain writes take the lock too, though only leases are written with PutIf: without it a
// Put's rename could land between a PutIf's version check and its rename, and the PutIf
// would overwrite it as if the condition held. The lock costs an open, a flock and a
// close (about 15 µs on ext4, measured in parallel), against the fsync every write
// already does (about 2 ms for a 4 KiB Put): under 1% of a push.

const (
	lockDir     = "~locks"
	lockStripes = 256
)

// lock takes the exclusive lock of p's stripe and returns its release. It waits (polling,
// so that ctx can end the wait) while another process or goroutine holds the stripe; the
// stripe is held only around a rename or a remove.
func (d *Driver) lock(ctx context.Context, p string) (func(), error) {
	h := fnv.New32a()
	_, _ = io.WriteString(h, p)
	name := filepath.Join(d.root, lockDir, fmt.Sprintf("%02x", h.Sum32()%lockStripes))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(name), 0o755); err == nil {
			f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
		}
	}
	if err != nil {
		return nil, err
	}
	wait := 50 * time.Microsecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing the descriptor releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Millisecond)
	}
}

// locked runs fn holding p's stripe lock.
func (d *Driver) locked(ctx context.Context, p string, fn func() error) error {
	unlock, err := d.lock(ctx, p)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// PutIf implements driver.Driver (see the comment on lockDir for how the condition is made
// atomic across processes). The version it returns is the new file's: its inode differs
// from the replaced object's (the file was created while that one still held its own)
// and its modification time is taken from the nanosecond clock, so the version changes
// on every PutIf.
func (d *Driver) PutIf(ctx context.Context, p string, r io.Reader, size int64, ifVersion string) (string, error) {
	if err := driver.CheckCall(ctx, "putif", p); err != nil {
		return "", err
	}
	b, err := driver.ReadConditionalBody(p, r, size)
	if err != nil {
		return "", err
	}
	tmp, err := d.writeTemp(ctx, bytes.NewReader(b))
	if err != nil {
		return "", classify("putif", p, err)
	}
	defer os.Remove(tmp) // a no-op once renamed; after a link it drops the second name
	// A modification time from the fine-grained clock (file systems stamp writes with a
	// coarse one, ticking every few milliseconds): should the new file reuse the inode of
	// an object replaced moments ago, with the same size, its version still differs.
	now := time.Now()
	if err := os.Chtimes(tmp, now, now); err != nil {
		return "", classify("putif", p, err)
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return "", classify("putif", p, err)
	}
	v := version(fi)
	dst := d.full(p)
	if ifVersion == "" {
		for attempt := 0; ; attempt++ {
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return "", classify("putif", p, err)
			}
			err := os.Link(tmp, dst)
			switch {
			case err == nil:
				return v, nil
			case errors.Is(err, fs.ErrExist):
				return "", classify("putif", p, fmt.Errorf("%w: object exists", driver.ErrPreconditionFailed))
			case errors.Is(err, fs.ErrNotExist) && attempt < 3:
				continue // a Delete pruned the empty parent directory meanwhile
			}
			return "", classify("putif", p, err)
		}
	}
	err = d.locked(ctx, p, func() error {
		cur, err := os.Stat(dst)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), err == nil && cur.IsDir():
			return fmt.Errorf("%w: no object, want version %s", driver.ErrPreconditionFailed, ifVersion)
		case err != nil:
			return err
		case version(cur) != ifVersion:
			return fmt.Errorf("%w: version %s, want %s", driver.ErrPreconditionFailed, version(cur), ifVersion)
		}
		return os.Rename(tmp, dst)
	})
	if err != nil {
		return "", classify("putif", p, err)
	}
	return v, nil
}

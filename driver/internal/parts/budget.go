// Package parts is what the cloud drivers' Writers share: a Pipeline that buffers an
// object's bytes in parts within a Driver-wide memory Budget and uploads full parts in the
// background with bounded concurrency, keeping the first failure; and the codec of the
// opaque resume states (and other small records) they hand out, with a kind, a version and
// a checksum.
//
// Who may import it: the drivers under driver/ (it is internal to them). Each driver keeps
// only its session protocol: how a part is uploaded, what State and Commit do with the
// bytes the pipeline still holds, and what its resume state records.
package parts

import (
	"context"

	"golang.org/x/sync/semaphore"

	"github.com/registryd/registryd/driver/internal/partbuf"
)

// Budget caps the bytes of part buffers held by all writers of one Driver, and recycles
// buffers of the Driver's part size. It is safe for concurrent use.
type Budget struct {
	sem  *semaphore.Weighted
	part int64
	bufs *partbuf.FreeList
}

// NewBudget returns a budget of total bytes (at least one part) for buffers of partSize.
func NewBudget(total, partSize int64) *Budget {
	total = max(total, partSize)
	return &Budget{
		sem:  semaphore.NewWeighted(total),
		part: partSize,
		bufs: partbuf.New(int(partSize), int(total/partSize), partbuf.DefaultIdle),
	}
}

// Acquire waits until n bytes of the budget are free and takes them, or returns ctx's
// error.
func (b *Budget) Acquire(ctx context.Context, n int64) error { return b.sem.Acquire(ctx, n) }

// TryAcquire takes n bytes of the budget if they are free now, and reports whether it did.
func (b *Budget) TryAcquire(n int64) bool { return b.sem.TryAcquire(n) }

// Release gives back n bytes taken with Acquire or TryAcquire.
func (b *Budget) Release(n int64) { b.sem.Release(n) }

// buffer returns an empty buffer of capacity size, recycled when size is the part size.
func (b *Budget) buffer(size int64) []byte {
	if size == b.part {
		return b.bufs.Get()
	}
	return make([]byte, 0, size)
}

// free gives back charged bytes of the budget and hands buf to the free list (which keeps
// only part-size buffers). The caller must not use buf afterwards.
func (b *Budget) free(buf []byte, charged int64) {
	if charged > 0 {
		b.sem.Release(charged)
	}
	b.bufs.Put(buf)
}

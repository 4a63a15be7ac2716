// Package partbuf recycles the part buffers of the object-store drivers' writers.
//
// A FreeList keeps full-size buffers across garbage collections (a sync.Pool drops its
// contents at every other GC, so a steady stream of parts re-allocates them and lets the
// heap, and the process's resident memory, swing up to twice the buffers in use). It holds
// at most the buffers the driver's memory budget admits, and lets them all go once it has
// been idle for a while.
package partbuf

import (
	"sync"
	"time"
)

// DefaultIdle is how long a FreeList keeps buffers nobody asked for.
const DefaultIdle = time.Minute

// FreeList recycles byte slices of one capacity. It is safe for concurrent use.
type FreeList struct {
	size int
	max  int
	idle time.Duration

	mu    sync.Mutex
	bufs  [][]byte
	used  bool        // a Get or Put happened since the idle timer was armed
	timer *time.Timer // armed while bufs is not empty
}

// New returns a FreeList of buffers of capacity size that keeps at most max of them, and
// none once idle has passed without a Get or Put.
func New(size, max int, idle time.Duration) *FreeList {
	return &FreeList{size: size, max: max, idle: idle}
}

// Get returns a buffer of length 0 and the list's capacity: a recycled one when there is one,
// else a new one.
func (f *FreeList) Get() []byte {
	f.mu.Lock()
	f.used = true
	if n := len(f.bufs); n > 0 {
		b := f.bufs[n-1]
		f.bufs[n-1] = nil
		f.bufs = f.bufs[:n-1]
		f.mu.Unlock()
		return b
	}
	f.mu.Unlock()
	return make([]byte, 0, f.size)
}

// Put hands b back for reuse. Buffers of another capacity, and buffers beyond max, are
// left to the garbage collector. The caller must not use b afterwards.
func (f *FreeList) Put(b []byte) {
	if cap(b) != f.size {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.used = true
	if len(f.bufs) >= f.max {
		return
	}
	f.bufs = append(f.bufs, b[:0])
	if f.timer == nil {
		f.timer = time.AfterFunc(f.idle, f.trim)
	}
}

// Len is the number of buffers kept for reuse.
func (f *FreeList) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bufs)
}

// trim drops every kept buffer if the list was not used for a whole idle period, and
// otherwise waits another period.
func (f *FreeList) trim() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.used && len(f.bufs) > 0 {
		f.used = false
		f.timer.Reset(f.idle)
		return
	}
	clear(f.bufs)
	f.bufs = nil
	f.timer = nil
}

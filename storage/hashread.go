package storage

import (
	"hash"
	"io"
)

const (
	// hashSlots and hashSlotSize bound what a hashingReader holds for its hasher: 1 MiB
	// per upload.
	hashSlots    = 4
	hashSlotSize = 256 << 10
)

// hashingReader passes Reads through from r and hashes the bytes read into h in a second
// goroutine, so that hashing one chunk overlaps reading (and storing) the next; on a busy
// machine the two run on different cores. Each chunk is copied for the hasher, since the
// caller may reuse its buffer as soon as Read returns. wait must be called once reading
// is over, whatever the outcome: h holds every byte read only after it returns.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	free chan []byte
	work chan []byte
	done chan struct{}
}

func newHashingReader(r io.Reader, h hash.Hash) *hashingReader {
	hr := &hashingReader{r: r, h: h, free: make(chan []byte, hashSlots), work: make(chan []byte, hashSlots), done: make(chan struct{})}
	for range hashSlots {
		hr.free <- make([]byte, hashSlotSize)
	}
	go func() {
		defer close(hr.done)
		for b := range hr.work {
			hr.h.Write(b)
			hr.free <- b[:cap(b)]
		}
	}()
	return hr
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	for q := p[:n]; len(q) > 0; {
		b := <-hr.free
		k := copy(b, q)
		hr.work <- b[:k]
		q = q[k:]
	}
	return n, err
}

// wait returns once every byte read so far is in h, and stops the hasher: it must not be
// called twice, nor Read after it.
func (hr *hashingReader) wait() {
	close(hr.work)
	<-hr.done
}

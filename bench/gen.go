package bench

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
)

// stream is a deterministic pseudo-random byte stream of a given size: the same seed gives
// the same bytes, so a blob can be hashed once and regenerated for each upload without
// holding it in memory.
type stream struct {
	r    *rand.ChaCha8
	left int64
}

func newStream(seed uint64, size int64) *stream {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return &stream{r: rand.NewChaCha8(s), left: size}
}

func (s *stream) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, _ := s.r.Read(p)
	s.left -= int64(n)
	return n, nil
}

// digestOf returns the sha256 digest of the stream (seed, size).
func digestOf(seed uint64, size int64) string {
	h := sha256.New()
	_, _ = io.CopyBuffer(h, newStream(seed, size), make([]byte, 1<<20))
	return fmt.Sprintf("sha256:%x", h.Sum(nil))
}

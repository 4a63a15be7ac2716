package storage

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// failingWriter accepts limit bytes, then fails.
type failingWriter struct {
	buf   bytes.Buffer
	limit int
}

var errWrite = errors.New("client went away")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.limit {
		k := w.limit - w.buf.Len()
		w.buf.Write(p[:k])
		return k, errWrite
	}
	return w.buf.Write(p)
}

func TestHashedCopy(t *testing.T) {
	const bufSize = 1 << 10
	data := make([]byte, 10*bufSize+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	errRead := errors.New("backend stream broke")
	for _, tc := range []struct {
		name    string
		src     io.Reader
		n       int64
		limit   int // writer capacity; 0: unlimited
		wantN   int64
		wantErr error
	}{
		{"nothing", bytes.NewReader(data), 0, 0, 0, nil},
		{"one byte", bytes.NewReader(data), 1, 0, 1, nil},
		{"under a buffer", bytes.NewReader(data), bufSize - 1, 0, bufSize - 1, nil},
		{"many buffers, unaligned", bytes.NewReader(data), int64(len(data)) - 1, 0, int64(len(data)) - 1, nil},
		{"whole source", bytes.NewReader(data), int64(len(data)), 0, int64(len(data)), nil},
		{"one-byte reads", iotest.OneByteReader(bytes.NewReader(data)), 3*bufSize + 5, 0, 3*bufSize + 5, nil},
		{"half reads", iotest.HalfReader(bytes.NewReader(data)), 5 * bufSize, 0, 5 * bufSize, nil},
		{"source ends early", bytes.NewReader(data[:2*bufSize]), 3 * bufSize, 0, 2 * bufSize, io.ErrUnexpectedEOF},
		{"source fails", io.MultiReader(bytes.NewReader(data[:bufSize+3]), iotest.ErrReader(errRead)), 4 * bufSize, 0, bufSize + 3, errRead},
		{"data with the error", iotest.DataErrReader(bytes.NewReader(data[:bufSize/2])), bufSize, 0, bufSize / 2, io.ErrUnexpectedEOF},
		{"writer fails", bytes.NewReader(data), 6 * bufSize, 2*bufSize + 1, 2*bufSize + 1, errWrite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &failingWriter{limit: tc.limit}
			if tc.limit == 0 {
				w.limit = len(data) + 1
			}
			h := sha256.New()
			n, err := hashedCopy(w, tc.src, h, tc.n, make([]byte, bufSize))
			if n != tc.wantN || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("hashedCopy = %d, %v; want %d, %v", n, err, tc.wantN, tc.wantErr)
			}
			if !bytes.Equal(w.buf.Bytes(), data[:n]) {
				t.Errorf("the writer got other bytes than the source's first %d", n)
			}
			if err == nil {
				// The hash holds exactly the bytes copied, complete when hashedCopy returns.
				if want := sha256.Sum256(data[:n]); !bytes.Equal(h.Sum(nil), want[:]) {
					t.Errorf("hash of %d bytes differs", n)
				}
			}
		})
	}
}

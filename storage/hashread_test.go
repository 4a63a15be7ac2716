package storage

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestHashingReader: whatever the shape of the reads, the hash holds exactly the bytes
// read once wait returns, even when the caller overwrites its buffer right after each
// Read, and the source's error is passed through.
func TestHashingReader(t *testing.T) {
	data := make([]byte, 3*hashSlotSize+12345)
	for i := range data {
		data[i] = byte(i*31 + i>>9)
	}
	errRead := errors.New("client went away")
	for _, tc := range []struct {
		name    string
		src     io.Reader
		bufSize int
		want    []byte // the bytes read
		wantErr error
	}{
		{"empty", bytes.NewReader(nil), 1024, nil, nil},
		{"small reads", bytes.NewReader(data), 1000, data, nil},
		{"one-byte reads", iotest.OneByteReader(bytes.NewReader(data[:5000])), 64, data[:5000], nil},
		{"reads larger than a slot", bytes.NewReader(data), 2*hashSlotSize + 7, data, nil},
		{"half reads", iotest.HalfReader(bytes.NewReader(data)), 1 << 20, data, nil},
		{"data with EOF", iotest.DataErrReader(bytes.NewReader(data)), 100 << 10, data, nil},
		{"source fails", io.MultiReader(bytes.NewReader(data[:hashSlotSize+3]), iotest.ErrReader(errRead)), 64 << 10, data[:hashSlotSize+3], errRead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sha256.New()
			hr := newHashingReader(tc.src, h)
			buf := make([]byte, tc.bufSize)
			var got []byte
			var err error
			for {
				var n int
				n, err = hr.Read(buf)
				got = append(got, buf[:n]...)
				for i := range buf[:n] {
					buf[i] = 0xAA // the caller reuses its buffer at once
				}
				if err != nil {
					break
				}
			}
			hr.wait()
			if err == io.EOF {
				err = nil
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("read %d bytes, want %d", len(got), len(tc.want))
			}
			if sum, want := h.Sum(nil), sha256.Sum256(tc.want); !bytes.Equal(sum, want[:]) {
				t.Fatal("the hash does not match the bytes read")
			}
		})
	}
}

package parts

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/registryd/registryd/driver"
)

// Records are the resume states (and other small records) the drivers encode:
//
//	kind (1 byte) | version (1 byte) | fields | CRC-32C of everything before (4 bytes, big endian)
//
// Fields are unsigned varints, fixed-size byte strings and length-prefixed strings, in an
// order each driver defines. kind tells the records of different drivers (and purposes)
// apart, so one is never taken for another; version is RecordVersion.

// RecordVersion is the version byte of every record this package encodes. A record of
// another version is malformed.
const RecordVersion = 1

// ErrMalformed is the error of a resume state (or record) that does not decode: not of
// this kind or version, altered, truncated or out of range. A malformed resume state names
// no session the driver could find, so it wraps driver.ErrNotFound (as the Writer
// contract says).
var ErrMalformed = fmt.Errorf("malformed resume state: %w", driver.ErrNotFound)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the CRC-32C (Castagnoli) checksum of b, the one records carry and GCS
// checks uploads with.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Encoder builds a record. The zero value is not usable: start with NewRecord.
type Encoder struct{ b []byte }

// NewRecord starts a record of kind.
func NewRecord(kind byte) *Encoder {
	return &Encoder{b: append(make([]byte, 0, 64), kind, RecordVersion)}
}

// Uint appends v as a varint.
func (e *Encoder) Uint(v uint64) *Encoder { e.b = binary.AppendUvarint(e.b, v); return e }

// Fixed appends b as is (the decoder knows its length).
func (e *Encoder) Fixed(b []byte) *Encoder { e.b = append(e.b, b...); return e }

// String appends s with its length.
func (e *Encoder) String(s string) *Encoder {
	e.b = append(binary.AppendUvarint(e.b, uint64(len(s))), s...)
	return e
}

// Seal returns the record with its checksum.
func (e *Encoder) Seal() []byte {
	return binary.BigEndian.AppendUint32(e.b, CRC32C(e.b))
}

// Decoder reads the fields of a record opened with Open. Once a read fails, every later
// read returns zero values and Close reports the failure.
type Decoder struct {
	b   []byte
	bad bool
}

// Open checks a record's kind, version and checksum and returns a decoder of its fields.
// It fails with ErrMalformed.
func Open(kind byte, rec []byte) (*Decoder, error) {
	if len(rec) < 2+4 || rec[0] != kind || rec[1] != RecordVersion {
		return nil, ErrMalformed
	}
	body, sum := rec[:len(rec)-4], binary.BigEndian.Uint32(rec[len(rec)-4:])
	if CRC32C(body) != sum {
		return nil, ErrMalformed
	}
	return &Decoder{b: body[2:]}, nil
}

// Uint reads a varint that must not exceed limit.
func (d *Decoder) Uint(limit uint64) uint64 {
	v, n := binary.Uvarint(d.b)
	if d.bad || n <= 0 || v > limit {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Int reads a varint that must lie in [0, limit].
func (d *Decoder) Int(limit int64) int64 { return int64(d.Uint(uint64(limit))) }

// Fixed fills dst.
func (d *Decoder) Fixed(dst []byte) {
	if d.bad || len(d.b) < len(dst) {
		d.bad = true
		return
	}
	d.b = d.b[copy(dst, d.b):]
}

// String reads a string of at most limit bytes.
func (d *Decoder) String(limit int) string {
	l := d.Uint(uint64(limit))
	if d.bad || l > uint64(len(d.b)) {
		d.bad = true
		return ""
	}
	s := string(d.b[:l])
	d.b = d.b[l:]
	return s
}

// Len is the number of bytes not read yet.
func (d *Decoder) Len() int { return len(d.b) }

// Close returns ErrMalformed if a read failed or bytes are left over, and the result of
// check (the record's own invariants) otherwise.
func (d *Decoder) Close(check bool) error {
	if d.bad || len(d.b) != 0 || !check {
		return ErrMalformed
	}
	return nil
}

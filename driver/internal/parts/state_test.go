package parts

import (
	"bytes"
	"errors"
	"testing"

	"github.com/registryd/registryd/driver"
)

type rec struct {
	id   [4]byte
	n    uint64
	name string
}

func encodeRec(r rec) []byte {
	return NewRecord('t').Fixed(r.id[:]).Uint(r.n).String(r.name).Seal()
}

func decodeRec(b []byte) (rec, error) {
	var r rec
	d, err := Open('t', b)
	if err != nil {
		return r, err
	}
	d.Fixed(r.id[:])
	r.n = d.Uint(1 << 40)
	r.name = d.String(16)
	return r, d.Close(r.n%2 == 0)
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []rec{{}, {id: [4]byte{1, 2, 3, 4}, n: 1 << 40, name: "sixteen-bytes-xx"}, {n: 2, name: "a"}} {
		b := encodeRec(r)
		got, err := decodeRec(b)
		if err != nil || got != r {
			t.Errorf("decode(encode(%+v)) = %+v, %v", r, got, err)
		}
	}
}

func TestRecordRejects(t *testing.T) {
	valid := encodeRec(rec{n: 4, name: "x"})
	reseal := func(body []byte) []byte { // a record with a valid checksum over body
		e := &Encoder{b: append([]byte(nil), body...)}
		return e.Seal()
	}
	cases := map[string][]byte{
		"nil":            nil,
		"empty":          {},
		"garbage":        []byte("garbage"),
		"ff":             bytes.Repeat([]byte{0xff}, 64),
		"truncated":      valid[:len(valid)-1],
		"trailing":       append(bytes.Clone(valid), 0),
		"other kind":     reseal(append([]byte{'u'}, valid[1:len(valid)-4]...)),
		"other version":  reseal(append([]byte{'t', RecordVersion + 1}, valid[2:len(valid)-4]...)),
		"left over":      reseal(append(bytes.Clone(valid[:len(valid)-4]), 0)),
		"short field":    reseal(valid[:4]),
		"out of range":   encodeRec(rec{n: 1<<40 + 2}),
		"string too big": encodeRec(rec{name: "seventeen-bytes-x"}),
		"invariant":      encodeRec(rec{n: 3}),
	}
	// Any single flipped bit is refused.
	for i := range valid {
		c := bytes.Clone(valid)
		c[i] ^= 0x10
		cases["flip "+string(rune('a'+i))] = c
	}
	for name, b := range cases {
		_, err := decodeRec(b)
		if !errors.Is(err, ErrMalformed) || !errors.Is(err, driver.ErrNotFound) || errors.Is(err, driver.ErrPreconditionFailed) {
			t.Errorf("%s: got %v, want ErrMalformed (ErrNotFound only)", name, err)
		}
	}
}

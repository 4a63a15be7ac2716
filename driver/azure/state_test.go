package azure

import (
	"bytes"
	"errors"
	"testing"

	"github.com/registryd/registryd/driver"
)

func TestStateRoundTrip(t *testing.T) {
	for _, s := range []state{
		{},
		{blocks: 1, size: 1},
		{blocks: maxBlocks, size: 4000 << 20 * maxBlocks},
	} {
		s.session[0], s.session[15] = 7, 9
		b := s.encode()
		if len(b) > 64 {
			t.Errorf("state of %d bytes", len(b))
		}
		got, err := decodeState(b)
		if err != nil || got != s {
			t.Errorf("decode(encode(%+v)) = %+v, %v", s, got, err)
		}
		// Any single flipped bit is refused.
		for i := range b {
			c := bytes.Clone(b)
			c[i] ^= 0x10
			if _, err := decodeState(c); err == nil {
				t.Errorf("flipped byte %d accepted", i)
			}
		}
	}
	for _, b := range [][]byte{nil, {}, []byte("garbage"), bytes.Repeat([]byte{0xff}, 64)} {
		if _, err := decodeState(b); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("decode(%q): %v", b, err)
		}
	}
}

func TestBlockID(t *testing.T) {
	var s [sessionLen]byte
	s[3] = 42
	ids := map[string]bool{}
	for _, k := range []byte{kindData, kindAck, kindAbort} {
		for _, i := range []uint32{0, 1, 49999} {
			id := blockID(s, k, i)
			if len(id) != 28 || ids[id] {
				t.Fatalf("id %q", id)
			}
			ids[id] = true
			gs, gk, gi, ok := parseBlockID(id)
			if !ok || gs != s || gk != k || gi != i {
				t.Errorf("parse(%q) = %v %c %d %v", id, gs, gk, gi, ok)
			}
		}
	}
	if _, _, _, ok := parseBlockID("QUFBQQ=="); ok {
		t.Error("foreign id parsed")
	}
}

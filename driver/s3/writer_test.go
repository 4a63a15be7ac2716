package s3

import (
	"bytes"
	"strings"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	st := writerState{
		partSize: 16 << 20,
		parts:    maxParts,
		size:     maxParts*(16<<20) + 12345,
		// AWS upload ids are opaque and long; allow a generous one.
		uploadID: strings.Repeat("u", 200),
		tailETag: `"0123456789abcdef0123456789abcdef"`,
		lastETag: `"0123456789abcdef0123456789abcdef-1"`,
	}
	copy(st.sid[:], "session-id-x")
	copy(st.nonce[:], "noncenon")
	b := st.marshal()
	if len(b) >= 512 {
		t.Errorf("state of %d bytes", len(b))
	}
	got, err := parseState(b)
	if err != nil {
		t.Fatal(err)
	}
	if *got != st {
		t.Errorf("round trip: got %+v, want %+v", *got, st)
	}
	empty := writerState{partSize: minChunkSize, size: 10}
	if got, err := parseState(empty.marshal()); err != nil || *got != empty {
		t.Errorf("state without parts: %+v, %v", got, err)
	}
}

func TestParseStateRejects(t *testing.T) {
	valid := writerState{partSize: minChunkSize, parts: 2, size: 2*minChunkSize + 3, uploadID: "u", tailETag: "t", lastETag: "l"}
	bad := map[string][]byte{
		"empty":     {},
		"garbage":   []byte("garbage"),
		"ff":        bytes.Repeat([]byte{0xff}, 64),
		"trailing":  append(valid.marshal(), 0),
		"truncated": valid.marshal()[:len(valid.marshal())-1],
	}
	for name, mod := range map[string]func(*writerState){
		"small part":           func(s *writerState) { s.partSize = 1 << 20 },
		"tail of a full part":  func(s *writerState) { s.size = 3 * minChunkSize },
		"size below parts":     func(s *writerState) { s.size = minChunkSize },
		"parts without upload": func(s *writerState) { s.uploadID = "" },
		"upload without parts": func(s *writerState) { s.parts, s.size = 0, 3 },
		"too many parts":       func(s *writerState) { s.parts, s.size = maxParts+1, (maxParts+1)*minChunkSize },
	} {
		s := valid
		mod(&s)
		bad[name] = s.marshal()
	}
	for name, b := range bad {
		if _, err := parseState(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

package s3

import (
	"bytes"
	"strings"
	"testing"

	"github.com/registryd/registryd/driver"
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

func TestComplete(t *testing.T) {
	infos := func(names ...string) []driver.Info {
		l := make([]driver.Info, len(names))
		for i, n := range names {
			l[i] = driver.Info{Path: "d/" + n}
		}
		return l
	}
	for _, c := range []struct {
		entries []string
		limit   int
		lastKey string
		want    bool
	}{
		{[]string{"a", "b"}, 3, "r/d/b", false},                  // too few
		{[]string{"a", "b", "c"}, 3, "r/d/c", true},              // no '-' or '.'
		{[]string{"c-1", "c-2", "c-3"}, 3, "r/d/c-3", false},     // "c/" may follow
		{[]string{"c-1", "c-2", "c-3"}, 3, "r/d/c/", true},       // "c/" was listed (or is absent)
		{[]string{"a", "b", "c.x", "z-1"}, 3, "r/d/z-1", true},   // "c/" < "z-1" listed already
		{[]string{"a", "b", "v1.0-rc"}, 3, "r/d/v1.0-rc", false}, // "v1/" or "v1.0/" may follow
	} {
		if got := complete(infos(c.entries...), c.limit, "r/d/", "d", c.lastKey); got != c.want {
			t.Errorf("complete(%v, %d, %q) = %v, want %v", c.entries, c.limit, c.lastKey, got, c.want)
		}
	}
}

package storage

import (
	"strings"
	"testing"

	regerr "github.com/registryd/registryd/errors"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true}, {"library/ubuntu", true}, {"a.b_c__d---e/f0", true}, {strings.Repeat("a", 255), true},
		{"", false}, {"A", false}, {"a/../b", false}, {"..", false}, {"a//b", false}, {"/a", false},
		{"a/", false}, {"a___b", false}, {"_a", false}, {"a/_layers", false}, {strings.Repeat("a", 256), false},
		{"a b", false}, {"a:b", false},
	} {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok || (err != nil && !regerr.Of(err, regerr.NameInvalid)) {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestValidateTag(t *testing.T) {
	for _, tc := range []struct {
		tag string
		ok  bool
	}{
		{"latest", true}, {"v1.0-rc_2", true}, {"_x", true}, {strings.Repeat("a", 128), true},
		{"", false}, {".x", false}, {"-x", false}, {"a/b", false}, {"a:b", false}, {strings.Repeat("a", 129), false},
	} {
		err := ValidateTag(tc.tag)
		if (err == nil) != tc.ok || (err != nil && !regerr.Of(err, regerr.TagInvalid)) {
			t.Errorf("ValidateTag(%q) = %v, want ok=%v", tc.tag, err, tc.ok)
		}
	}
}

func TestParseDigest(t *testing.T) {
	hex64 := strings.Repeat("a", 64)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"sha256:" + hex64, true}, {"sha512:" + strings.Repeat("b", 128), true},
		{"sha256:" + hex64[:63], false}, {"sha256:" + strings.Repeat("g", 64), false},
		{"sha256:" + strings.ToUpper(hex64), false}, {"md5:" + hex64[:32], false},
		{"sha384:" + strings.Repeat("a", 96), false}, {hex64, false}, {"", false}, {"sha256:", false},
	} {
		_, err := ParseDigest(tc.in)
		if (err == nil) != tc.ok || (err != nil && !regerr.Of(err, regerr.DigestInvalid)) {
			t.Errorf("ParseDigest(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

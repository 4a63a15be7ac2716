package main

import (
	"bytes"
	"testing"
)

// TestSigningKey: a short http.secret is stretched to a key storage accepts, the same for
// every replica; a long one is used as it is.
func TestSigningKey(t *testing.T) {
	if signingKey("") != nil {
		t.Error("empty secret: want nil (a random key)")
	}
	short := signingKey("hmacsecret")
	if len(short) != 32 || !bytes.Equal(short, signingKey("hmacsecret")) || bytes.Equal(short, signingKey("hmacsecreu")) {
		t.Errorf("short secret: key %x", short)
	}
	if got := signingKey("0123456789abcdef"); string(got) != "0123456789abcdef" {
		t.Errorf("long secret: key %q", got)
	}
}

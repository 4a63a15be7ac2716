package storage

import (
	"context"
	"testing"

	"github.com/registryd/registryd/driver/inmemory"
	regerr "github.com/registryd/registryd/errors"
)

// TestUploadTokenOwner: an upload's state parses only for the owner it was issued to.
func TestUploadTokenOwner(t *testing.T) {
	r := newTestRegistry(t, inmemory.New())
	for _, c := range []struct {
		issued, parsed string
		ok             bool
	}{
		{"", "", true},
		{"user:alice", "user:alice", true},
		{"user:alice", "user:bob", false},
		{"user:alice", "", false},
		{"", "user:alice", false},
		{"user:a\x00b", "user:a", false},
	} {
		u, err := r.StartUpload(context.Background(), "team/app")
		if err != nil {
			t.Fatal(err)
		}
		u.Owner = c.issued
		got, err := r.ParseUpload("team/app", c.parsed, u.ID, r.Token(u))
		if c.ok != (err == nil) {
			t.Errorf("issued to %q, parsed as %q: %v, want ok %v", c.issued, c.parsed, err, c.ok)
			continue
		}
		if !c.ok && !regerr.Of(err, regerr.BlobUploadUnknown) {
			t.Errorf("issued to %q, parsed as %q: %v, want BLOB_UPLOAD_UNKNOWN", c.issued, c.parsed, err)
		}
		if c.ok && got.Owner != c.parsed {
			t.Errorf("parsed upload owner %q, want %q", got.Owner, c.parsed)
		}
	}
}

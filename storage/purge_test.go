package storage

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver/inmemory"
	regerr "github.com/registryd/registryd/errors"
)

func TestPurgeUploads(t *testing.T) {
	ctx := context.Background()
	mem := inmemory.New()
	r := newTestRegistry(t, mem)
	start := func(repo string, chunk []byte) *Upload {
		u, err := r.StartUpload(ctx, repo)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.AppendUpload(ctx, u, 0, bytes.NewReader(chunk)); err != nil {
			t.Fatal(err)
		}
		return u
	}
	setMarker := func(u *Upload, s string) {
		if err := mem.Put(ctx, uploadStartedPath(u.Repo, u.ID), strings.NewReader(s), int64(len(s))); err != nil {
			t.Fatal(err)
		}
	}
	// A directory a failed clean-up left behind, without a marker, written before the
	// cutoff; another one written after it (perhaps a clean-up in progress) stays.
	leftover := func(id string) {
		if err := mem.Put(ctx, uploadDir("c", id)+"/data.tail", strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	leftover("leftover")
	old := start("b/nested/old", []byte("old bytes"))
	setMarker(old, time.Now().Add(-48*time.Hour).UTC().Format(time.RFC3339Nano))
	time.Sleep(10 * time.Millisecond)
	cutoff := time.Now()
	time.Sleep(10 * time.Millisecond)
	fresh := start("a/fresh", []byte("fresh bytes"))
	unreadable := start("c", []byte("unreadable marker"))
	setMarker(unreadable, "not a time")
	leftover("recent")

	n, err := r.PurgeUploads(ctx, cutoff, true)
	if err != nil || n != 2 {
		t.Fatalf("dry run: %d, %v; want 2 (the old upload and the leftover)", n, err)
	}
	if err := r.UploadStatus(ctx, old); err != nil {
		t.Fatalf("a dry run removed an upload: %v", err)
	}
	if n, err = r.PurgeUploads(ctx, cutoff, false); err != nil || n != 2 {
		t.Fatalf("purge: %d, %v; want 2", n, err)
	}
	if l, err := mem.List(ctx, uploadDir("c", "recent"), "", 0); err != nil || len(l) != 1 {
		t.Errorf("a leftover written after the cutoff was purged (%d entries, %v)", len(l), err)
	}
	for _, dir := range []string{uploadDir(old.Repo, old.ID), uploadDir("c", "leftover")} {
		if l, err := mem.List(ctx, dir, "", 0); err != nil || len(l) != 0 {
			t.Errorf("%s still holds %d entries (%v)", dir, len(l), err)
		}
	}
	if err := r.AppendUpload(ctx, old, old.Offset, strings.NewReader("more")); !regerr.Of(err, regerr.BlobUploadUnknown) {
		t.Errorf("PATCH of a purged upload: %v, want BLOB_UPLOAD_UNKNOWN", err)
	}
	// The fresh upload, and the one whose age is unknown, go on.
	if err := r.UploadStatus(ctx, unreadable); err != nil {
		t.Errorf("an upload with an unreadable marker was purged: %v", err)
	}
	want := []byte("fresh bytes, finished")
	b, err := r.FinishUpload(ctx, fresh, fresh.Offset, strings.NewReader(", finished"), digest.FromBytes(want))
	if err != nil || b.Size != int64(len(want)) {
		t.Fatalf("finish the fresh upload after a purge: %+v, %v", b, err)
	}
	if n, err = r.PurgeUploads(ctx, cutoff, false); err != nil || n != 0 {
		t.Errorf("second purge: %d, %v; want nothing left to purge", n, err)
	}
}

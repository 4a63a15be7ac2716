package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/inmemory"
	regerr "github.com/registryd/registryd/errors"
)

// failOnce fails the first call of op (a method name) on a path with the suffix given,
// with ErrUnavailable, and passes every other call through.
type failOnce struct {
	driver.Driver
	op, suffix string
	done       atomic.Bool
}

var errInjected = errors.New("injected")

func (f *failOnce) fail(op, p string) error {
	if op == f.op && strings.HasSuffix(p, f.suffix) && f.done.CompareAndSwap(false, true) {
		return errors.Join(driver.ErrUnavailable, errInjected)
	}
	return nil
}

func (f *failOnce) Copy(ctx context.Context, src, dst string) error {
	if err := f.fail("Copy", dst); err != nil {
		return err
	}
	return f.Driver.Copy(ctx, src, dst)
}

func (f *failOnce) Put(ctx context.Context, p string, r io.Reader, n int64) error {
	if err := f.fail("Put", p); err != nil {
		return err
	}
	return f.Driver.Put(ctx, p, r, n)
}

// TestCompleteUpload runs the completion steps on every path through them: a blob sent
// whole (PutBlob, or the PUT of an empty upload) or in chunks, with the streamed sha256
// or a sha512 digest verified by reading the upload back, matching or not, stored already
// or not. A completed blob is readable and linked; a refused one leaves no blob; either
// way the upload is gone.
func TestCompleteUpload(t *testing.T) {
	ctx := context.Background()
	blob := bytes.Repeat([]byte("registryd"), 1000)
	const repo = "r"
	for _, tc := range []struct {
		name    string
		chunks  int // 0: PutBlob; 1: the PUT of an empty upload carries it all; 2: a PATCH then the PUT
		alg     digest.Algorithm
		wrong   bool // the client declares another digest
		stored  bool // the blob is stored already (by another repository)
		wantErr regerr.Descriptor
	}{
		{name: "whole sha256", chunks: 0, alg: digest.SHA256},
		{name: "whole sha512", chunks: 0, alg: digest.SHA512},
		{name: "whole stored", chunks: 0, alg: digest.SHA256, stored: true},
		{name: "whole wrong digest", chunks: 0, alg: digest.SHA256, wrong: true, wantErr: regerr.DigestInvalid},
		{name: "PUT of an empty upload", chunks: 1, alg: digest.SHA256},
		{name: "PUT of an empty upload, wrong digest", chunks: 1, alg: digest.SHA256, wrong: true, wantErr: regerr.DigestInvalid},
		{name: "chunked sha256", chunks: 2, alg: digest.SHA256},
		{name: "chunked sha512", chunks: 2, alg: digest.SHA512},
		{name: "chunked stored", chunks: 2, alg: digest.SHA256, stored: true},
		{name: "chunked sha512 stored", chunks: 2, alg: digest.SHA512, stored: true},
		{name: "chunked wrong digest", chunks: 2, alg: digest.SHA256, wrong: true, wantErr: regerr.DigestInvalid},
		{name: "chunked sha512 wrong digest", chunks: 2, alg: digest.SHA512, wrong: true, wantErr: regerr.DigestInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRegistry(t, inmemory.New())
			want := tc.alg.FromBytes(blob)
			if tc.wrong {
				want = tc.alg.FromString("something else")
			}
			if tc.stored {
				if _, err := r.PutBlob(ctx, "other", bytes.NewReader(blob), want); err != nil {
					t.Fatal(err)
				}
			}
			var u *Upload
			var err error
			switch tc.chunks {
			case 0:
				_, err = r.PutBlob(ctx, repo, bytes.NewReader(blob), want)
			case 1, 2:
				if u, err = r.StartUpload(ctx, repo); err != nil {
					t.Fatal(err)
				}
				rest := blob
				if tc.chunks == 2 {
					if err := r.AppendUpload(ctx, u, 0, bytes.NewReader(blob[:1000])); err != nil {
						t.Fatal(err)
					}
					rest = blob[1000:]
				}
				_, err = r.FinishUpload(ctx, u, -1, bytes.NewReader(rest), want)
			}
			if tc.wantErr.Code != "" {
				if !regerr.Of(err, tc.wantErr) {
					t.Fatalf("err = %v, want %s", err, tc.wantErr.Code)
				}
				if _, err := r.d.Stat(ctx, blobDataPath(want)); !errors.Is(err, driver.ErrNotFound) {
					t.Errorf("the refused blob is stored: %v", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				got, err := readBlob(t, r, repo, want)
				if err != nil || !bytes.Equal(got, blob) {
					t.Fatalf("read back %d bytes, %v; want the blob", len(got), err)
				}
			}
			if u != nil {
				if l, err := r.d.List(ctx, uploadDir(repo, u.ID), "", 10); err != nil || len(l) != 0 {
					t.Errorf("upload objects left: %v, %v", l, err)
				}
			}
		})
	}
}

// TestRetriedPutAfterPlaceOrLink: a PUT whose session was committed and that then failed
// (the copy to the content address, or the link) leaves the upload finishable: the
// client's retry with the same token completes it.
func TestRetriedPutAfterPlaceOrLink(t *testing.T) {
	ctx := context.Background()
	blob := bytes.Repeat([]byte("replayed"), 1000)
	for _, tc := range []struct {
		name   string
		alg    digest.Algorithm
		op     string
		suffix string
	}{
		{"sha512, the copy to the content address fails", digest.SHA512, "Copy", "/data"},
		{"sha256, the link fails", digest.SHA256, "Put", "/link"},
		{"sha512, the link fails", digest.SHA512, "Put", "/link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &failOnce{Driver: inmemory.New(), op: tc.op, suffix: tc.suffix}
			r := newTestRegistry(t, d)
			want := tc.alg.FromBytes(blob)
			u, err := r.StartUpload(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			if err := r.AppendUpload(ctx, u, 0, bytes.NewReader(blob[:3000])); err != nil {
				t.Fatal(err)
			}
			retry := *u
			if _, err := r.FinishUpload(ctx, u, -1, bytes.NewReader(blob[3000:]), want); !errors.Is(err, errInjected) {
				t.Fatalf("first PUT: err = %v, want the injected failure", err)
			}
			b, err := r.FinishUpload(ctx, &retry, -1, bytes.NewReader(blob[3000:]), want)
			if err != nil {
				t.Fatalf("retried PUT: %v", err)
			}
			if b.Size != int64(len(blob)) {
				t.Errorf("size %d, want %d", b.Size, len(blob))
			}
			if got, err := readBlob(t, r, "r", want); err != nil || !bytes.Equal(got, blob) {
				t.Fatalf("read back %d bytes, %v; want the blob", len(got), err)
			}
		})
	}
}

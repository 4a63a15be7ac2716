package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/filesystem"
	"github.com/registryd/registryd/driver/inmemory"
	regerr "github.com/registryd/registryd/errors"
)

// TestReplayedToken: an upload's chunks A and B were acknowledged, the response to B was
// lost, and the client comes back with the token it got for A (or the one from the
// start). Every request then either continues the upload from the backend's record or
// answers 416 with the upload's true Range and a state continuing from there; the upload
// completes with the right digest either way.
func TestReplayedToken(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 7))
	blob := make([]byte, 3000)
	for i := range blob {
		blob[i] = byte(rng.IntN(256))
	}
	const a, b = 1000, 2200 // chunk A is [0,a), the lost chunk B is [a,b)
	want := digest.FromBytes(blob)
	junk := bytes.Repeat([]byte("J"), b-a)

	type call struct {
		put   bool  // FinishUpload instead of AppendUpload
		start int64 // Content-Range start, -1 for none
		body  []byte
	}
	for _, tc := range []struct {
		name       string
		token      int   // which token the client replays: 0 (from the start) or 1 (after A)
		noRecord   bool  // the record was lost (a crash between State and the record)
		call       call  // the replayed request
		wantErr    bool  // 416 BLOB_UPLOAD_INVALID expected
		wantOffset int64 // u.Offset after the call (the Range the client is told)
	}{
		{"PATCH repeats the lost chunk", 1, false, call{false, a, blob[a:b]}, false, b},
		{"PATCH repeats it without Content-Range", 1, false, call{false, -1, blob[a:b]}, false, b},
		{"PATCH repeats it and sends more", 1, false, call{false, a, blob[a:2500]}, false, 2500},
		{"PATCH from the start repeats both chunks", 0, false, call{false, 0, blob[:b]}, false, b},
		{"PATCH continues at the true offset", 1, false, call{false, b, blob[b:2500]}, false, 2500},
		{"PATCH with other bytes", 1, false, call{false, a, junk}, true, b},
		{"PATCH shorter than the lost chunk", 1, false, call{false, a, blob[a : b-1]}, true, b},
		{"PATCH at neither offset", 1, false, call{false, a + 1, blob[a+1 : b]}, true, b},
		{"PATCH without a body", 1, false, call{false, a, nil}, true, b},
		{"PUT repeats the lost chunk and the rest", 1, false, call{true, a, blob[a:]}, false, int64(len(blob))},
		{"PUT continues at the true offset", 1, false, call{true, b, blob[b:]}, false, int64(len(blob))},
		{"PUT without a body", 1, false, call{true, -1, nil}, true, b},
		{"no record: the token's own Range", 1, true, call{false, a, blob[a:b]}, true, a},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := inmemory.New()
			r := newTestRegistry(t, mem)
			u, err := r.StartUpload(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			tokens := []string{r.Token(u)}
			if err := r.AppendUpload(ctx, u, 0, bytes.NewReader(blob[:a])); err != nil {
				t.Fatal(err)
			}
			tokens = append(tokens, r.Token(u))
			if err := r.AppendUpload(ctx, u, a, bytes.NewReader(blob[a:b])); err != nil {
				t.Fatal(err)
			}
			if tc.noRecord {
				if err := mem.Delete(ctx, uploadAckedPath("r", u.ID)); err != nil {
					t.Fatal(err)
				}
			}
			old, err := r.ParseUpload("r", "", u.ID, tokens[tc.token])
			if err != nil {
				t.Fatal(err)
			}
			var body io.Reader
			if tc.call.body != nil {
				body = bytes.NewReader(tc.call.body)
			}
			if tc.call.put {
				_, err = r.FinishUpload(ctx, old, tc.call.start, body, want)
			} else {
				err = r.AppendUpload(ctx, old, tc.call.start, body)
			}
			if tc.wantErr != regerr.Of(err, regerr.BlobUploadOutOfOrder) || (!tc.wantErr && err != nil) {
				t.Fatalf("replayed request: %v, want 416: %v", err, tc.wantErr)
			}
			if tc.call.put && !tc.wantErr {
				checkBlob(t, r, want, blob)
				return
			}
			if old.Offset != tc.wantOffset {
				t.Fatalf("offset after the replayed request %d, want %d", old.Offset, tc.wantOffset)
			}
			// The client goes on from what it was told, through a token, as over HTTP.
			next, err := r.ParseUpload("r", "", u.ID, r.Token(old))
			if err != nil {
				t.Fatal(err)
			}
			if err := r.UploadStatus(ctx, next); err != nil || next.Offset != tc.wantOffset {
				t.Fatalf("status: offset %d, %v; want %d", next.Offset, err, tc.wantOffset)
			}
			if tc.noRecord {
				// Nothing to continue from: the upload cannot resume, as before records.
				if err := r.AppendUpload(ctx, next, a, bytes.NewReader(blob[a:])); !regerr.Of(err, regerr.BlobUploadOutOfOrder) {
					t.Fatalf("without a record: %v, want 416", err)
				}
				return
			}
			if _, err := r.FinishUpload(ctx, next, next.Offset, bytes.NewReader(blob[next.Offset:]), want); err != nil {
				t.Fatalf("finish from %d: %v", next.Offset, err)
			}
			checkBlob(t, r, want, blob)
		})
	}
}

func checkBlob(t *testing.T, r *Registry, want digest.Digest, blob []byte) {
	t.Helper()
	got, err := readBlob(t, r, "r", want)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("blob %s after the replay: %d bytes, %v", want, len(got), err)
	}
	l, err := r.d.List(context.Background(), repoDir("r")+"/_uploads", "", 0)
	if err != nil || len(l) != 0 {
		t.Fatalf("uploads left behind: %v, %v", l, err)
	}
}

// TestReplayedTokenStatus: a status request with a token behind the upload answers the
// record's offset; with the current token, or one ahead of a lost record, its own.
func TestReplayedTokenStatus(t *testing.T) {
	ctx := context.Background()
	mem := inmemory.New()
	r := newTestRegistry(t, mem)
	u, err := r.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	t0 := r.Token(u)
	for i, chunk := range []string{"first", "second", "third"} {
		if err := r.AppendUpload(ctx, u, -1, bytes.NewReader([]byte(chunk))); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	t3 := r.Token(u)
	for _, tc := range []struct {
		name, token string
		want        int64
	}{{"from the start", t0, 16}, {"current", t3, 16}} {
		got, err := r.ParseUpload("r", "", u.ID, tc.token)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.UploadStatus(ctx, got); err != nil || got.Offset != tc.want {
			t.Errorf("%s: offset %d, %v; want %d", tc.name, got.Offset, err, tc.want)
		}
	}
	// A record older than the token (its write failed): the token's own state stands.
	stale := *u
	stale.Offset = 5
	b := encodeAcked(&stale)
	if err := mem.Put(ctx, uploadAckedPath("r", u.ID), bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	got, _ := r.ParseUpload("r", "", u.ID, t3)
	if err := r.UploadStatus(ctx, got); err != nil || got.Offset != 16 {
		t.Errorf("record behind the token: offset %d, %v; want 16", got.Offset, err)
	}
	// Cancel removes the record with the upload; the old token is then unknown.
	if err := r.CancelUpload(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Stat(ctx, uploadAckedPath("r", u.ID)); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("record after cancel: %v", err)
	}
	old, _ := r.ParseUpload("r", "", u.ID, t0)
	if err := r.UploadStatus(ctx, old); !regerr.Of(err, regerr.BlobUploadUnknown) {
		t.Errorf("status after cancel: %v, want BLOB_UPLOAD_UNKNOWN", err)
	}
}

// TestAckedRecordCodec: a record round-trips, and a malformed one is refused.
func TestAckedRecordCodec(t *testing.T) {
	u := &Upload{Repo: "r", ID: newUploadID(), Offset: 1 << 40, hash: []byte("hash state"), state: []byte("driver state")}
	b := encodeAcked(u)
	got, err := decodeAcked(&Upload{Repo: "r", ID: u.ID}, b)
	if err != nil || got.Offset != u.Offset || !bytes.Equal(got.hash, u.hash) || !bytes.Equal(got.state, u.state) || got.ID != u.ID {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {2}, b[:len(b)-1], append(bytes.Clone(b), 0)} {
		if _, err := decodeAcked(u, bad); !errors.Is(err, errBadAcked) {
			t.Errorf("decode %x: %v, want errBadAcked", bad, err)
		}
	}
}

// cancelAfterState cancels the request when a writer's State returns: the client went
// away after the backend acknowledged its chunk, before the answer.
type cancelAfterState struct {
	driver.Driver
	cancel context.CancelFunc
}

func (d *cancelAfterState) Writer(ctx context.Context, p string, resume []byte) (driver.Writer, error) {
	w, err := d.Driver.Writer(ctx, p, resume)
	if err != nil {
		return nil, err
	}
	return stateHook{w, d.cancel}, nil
}

type stateHook struct {
	driver.Writer
	after func()
}

func (w stateHook) State(ctx context.Context) ([]byte, error) {
	defer w.after()
	return w.Writer.State(ctx)
}

// TestAckedRecordOutlivesClient: the record is written even when the request's context
// ends right after the driver acknowledged the chunk, so the client, which never saw the
// answer, resumes with its previous token.
func TestAckedRecordOutlivesClient(t *testing.T) {
	mem := inmemory.New()
	r := newTestRegistry(t, mem)
	u, err := r.StartUpload(context.Background(), "r")
	if err != nil {
		t.Fatal(err)
	}
	prev := *u
	ctx, cancel := context.WithCancel(context.Background())
	r.d = &cancelAfterState{Driver: mem, cancel: cancel}
	if err := r.AppendUpload(ctx, u, 0, bytes.NewReader([]byte("chunk"))); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() == nil {
		t.Fatal("the request was not cancelled")
	}
	r.d = mem
	if err := r.UploadStatus(context.Background(), &prev); err != nil || prev.Offset != 5 {
		t.Fatalf("status with the previous token: offset %d, %v; want 5", prev.Offset, err)
	}
}

// BenchmarkPatchRecord measures, on the filesystem driver, an 8 MiB PATCH (AppendUpload,
// which includes the record) and the record's write alone: the share of a PATCH that the
// acknowledged-state record costs.
func BenchmarkPatchRecord(b *testing.B) {
	d, err := filesystem.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(d, Options{Secret: []byte("0123456789abcdef0123")})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	chunk := bytes.Repeat([]byte("registryd"), 8<<20/9)
	u, err := r.StartUpload(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("patch 8 MiB", func(b *testing.B) {
		b.SetBytes(int64(len(chunk)))
		for b.Loop() {
			if err := r.AppendUpload(ctx, u, u.Offset, bytes.NewReader(chunk)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("record alone", func(b *testing.B) {
		for b.Loop() {
			r.recordAcked(ctx, u)
		}
	})
}

// TestReplayKeepsCurrentToken: a replay that only repeats the acknowledged chunk changes
// nothing in the backend, so the token of the "lost" response (which a client behind a
// retrying proxy may hold after all) keeps working, as does the replay's.
func TestReplayKeepsCurrentToken(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t, inmemory.New())
	blob := []byte("first chunk|second chunk|third chunk")
	want := digest.FromBytes(blob)
	u, err := r.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AppendUpload(ctx, u, 0, bytes.NewReader(blob[:12])); err != nil {
		t.Fatal(err)
	}
	before := r.Token(u)
	if err := r.AppendUpload(ctx, u, 12, bytes.NewReader(blob[12:25])); err != nil {
		t.Fatal(err)
	}
	lost := r.Token(u)
	replay, _ := r.ParseUpload("r", "", u.ID, before)
	if err := r.AppendUpload(ctx, replay, 12, bytes.NewReader(blob[12:25])); err != nil || replay.Offset != 25 {
		t.Fatalf("replay: offset %d, %v", replay.Offset, err)
	}
	for i, tok := range []string{lost, r.Token(replay)} {
		next, _ := r.ParseUpload("r", "", u.ID, tok)
		if err := r.UploadStatus(ctx, next); err != nil || next.Offset != 25 {
			t.Fatalf("token %d: offset %d, %v", i, next.Offset, err)
		}
	}
	next, _ := r.ParseUpload("r", "", u.ID, lost)
	if _, err := r.FinishUpload(ctx, next, 25, bytes.NewReader(blob[25:]), want); err != nil {
		t.Fatalf("finish with the lost response's token: %v", err)
	}
	checkBlob(t, r, want, blob)
}

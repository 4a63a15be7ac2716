package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/inmemory"
	regerr "github.com/registryd/registryd/errors"
)

// rendezvousDriver records the paths of Stat and Reader calls. With hold set, a Stat of a
// path ending in hold does not answer until a call of another path has started (or
// waitFor has passed, which fails the test): it shows that the lookup that follows is
// made concurrently with it, not after it.
type rendezvousDriver struct {
	driver.Driver
	t       *testing.T
	hold    string
	unsized bool // streams do not say the object's size
	waitFor time.Duration

	mu      sync.Mutex
	calls   []string
	started chan struct{} // receives one value per call that is not a link Stat
}

func (r *rendezvousDriver) record(op, p string) {
	r.mu.Lock()
	r.calls = append(r.calls, op+" "+p)
	r.mu.Unlock()
	if r.hold == "" || !strings.HasSuffix(p, r.hold) {
		select {
		case r.started <- struct{}{}:
		default:
		}
	}
}

func (r *rendezvousDriver) Stat(ctx context.Context, p string) (driver.Info, error) {
	r.record("stat", p)
	if r.hold != "" && strings.HasSuffix(p, r.hold) {
		select {
		case <-r.started:
		case <-time.After(r.waitFor):
			r.t.Errorf("stat %s: no other lookup started meanwhile: the lookups ran one after the other", p)
		}
	}
	return r.Driver.Stat(ctx, p)
}

func (r *rendezvousDriver) Reader(ctx context.Context, p string, off, n int64) (io.ReadCloser, error) {
	r.record("read", p)
	rc, err := r.Driver.Reader(ctx, p, off, n)
	if err == nil && r.unsized {
		rc = driver.WithVersion(rc, driver.ReaderVersion(rc))
	}
	return rc, err
}

func (r *rendezvousDriver) reset(link, unsized bool) {
	hold := ""
	if link {
		hold = "/link"
	}
	r.resetHold(hold, unsized)
}

func (r *rendezvousDriver) resetHold(hold string, unsized bool) {
	r.mu.Lock()
	r.calls, r.hold, r.unsized, r.started = nil, hold, unsized, make(chan struct{}, 16)
	r.mu.Unlock()
}

// readAll reads the whole blob with OpenBlobForRead.
func readAll(ctx context.Context, r *Registry, repo string, d digest.Digest) ([]byte, error) {
	br, err := r.OpenBlobForRead(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	defer br.Close()
	var b bytes.Buffer
	if _, err := br.WriteTo(&b); err != nil {
		return nil, err
	}
	if int64(b.Len()) != br.Info().Size {
		return nil, fmt.Errorf("read %d bytes, Info says %d", b.Len(), br.Info().Size)
	}
	return b.Bytes(), nil
}

// TestLookupsAtOnce: a blob GET looks up the repository's link and the blob's data in one
// round trip (a plain GET opens the stream meanwhile and takes the size from it, with a
// Stat only when the stream does not say), as do manifest reads after resolving a tag; the
// answers are the same as one-after-the-other lookups, and a blob HEAD for a repository
// without the link makes one backend call.
func TestLookupsAtOnce(t *testing.T) {
	ctx := context.Background()
	mem := inmemory.New()
	rd := &rendezvousDriver{Driver: mem, t: t, waitFor: 10 * time.Second}
	rd.reset(false, false)
	r := newTestRegistry(t, rd)
	blob := []byte("layer bytes")
	bd := digest.FromBytes(blob)
	if _, err := r.PutBlob(ctx, "a/b", bytes.NewReader(blob), bd); err != nil {
		t.Fatal(err)
	}
	man := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`,
		MediaTypeOCIManifest, bd, len(blob)))
	md := digest.FromBytes(man)
	if _, err := r.PutManifest(ctx, "a/b", "v1", man, MediaTypeOCIManifest, nil); err != nil {
		t.Fatal(err)
	}
	missing := digest.FromString("missing")
	// A digest whose object was stored with no bytes: never served as a complete blob.
	truncated := digest.FromString("truncated")
	if err := mem.Put(ctx, blobDataPath(truncated), bytes.NewReader(nil), 0); err != nil {
		t.Fatal(err)
	}
	if err := r.putLink(ctx, layerLinkPath("a/b", truncated), truncated); err != nil {
		t.Fatal(err)
	}

	empty := digest.FromBytes(nil)
	if _, err := r.PutBlob(ctx, "a/b", bytes.NewReader(nil), empty); err != nil {
		t.Fatal(err)
	}
	stream := func(repo string, d digest.Digest, want []byte) func() error {
		return func() error {
			got, err := readAll(ctx, r, repo, d)
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("read %q, want %q", got, want)
			}
			return err
		}
	}
	for _, tc := range []struct {
		name     string
		atOnce   bool
		unsized  bool
		call     func() error
		wantCode string // "" for success
		maxCalls int    // 0: no bound checked
	}{
		{"blob stream, stored", true, false, stream("a/b", bd, blob), "", 2},
		{"blob stream, empty", true, false, stream("a/b", empty, nil), "", 2},
		{"blob stream, size unknown to the stream", true, true, stream("a/b", bd, blob), "", 3},
		{"blob stream, not in the repository", true, false, stream("c/d", bd, nil), "BLOB_UNKNOWN", 2},
		{"blob stream, unknown digest", false, false, stream("a/b", missing, nil), "BLOB_UNKNOWN", 2},
		{"blob stream, stored with 0 bytes", true, false, stream("a/b", truncated, nil), "corrupt", 2},
		{"blob GET, stored with 0 bytes", true, false, func() error {
			_, err := r.StatBlobForRead(ctx, "a/b", truncated)
			return err
		}, "corrupt", 0},
		{"blob HEAD, stored with 0 bytes", false, false, func() error {
			_, err := r.StatBlob(ctx, "a/b", truncated)
			return err
		}, "corrupt", 0},
		{"blob GET, stored", true, false, func() error {
			b, err := r.StatBlobForRead(ctx, "a/b", bd)
			if err == nil && b.Size != int64(len(blob)) {
				err = fmt.Errorf("size %d", b.Size)
			}
			return err
		}, "", 0},
		{"blob GET, not in the repository", true, false, func() error {
			_, err := r.StatBlobForRead(ctx, "c/d", bd)
			return err
		}, "BLOB_UNKNOWN", 0},
		{"blob GET, unknown digest", false, false, func() error {
			_, err := r.StatBlobForRead(ctx, "a/b", missing)
			return err
		}, "BLOB_UNKNOWN", 0},
		{"blob HEAD, not in the repository", false, false, func() error {
			_, err := r.StatBlob(ctx, "c/d", bd)
			return err
		}, "BLOB_UNKNOWN", 1},
		{"blob HEAD, stored", false, false, func() error {
			_, err := r.StatBlob(ctx, "a/b", bd)
			return err
		}, "", 2},
		{"manifest by digest", true, false, func() error {
			m, err := r.GetManifest(ctx, "a/b", md.String())
			if err == nil && !bytes.Equal(m.Body, man) {
				err = errors.New("other bytes")
			}
			return err
		}, "", 0},
		{"manifest by tag", true, false, func() error {
			m, err := r.GetManifest(ctx, "a/b", "v1")
			if err == nil && m.Digest != md {
				err = fmt.Errorf("digest %s", m.Digest)
			}
			return err
		}, "", 0},
		{"manifest not in the repository", true, false, func() error {
			_, err := r.GetManifest(ctx, "c/d", md.String())
			return err
		}, "MANIFEST_UNKNOWN", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd.reset(tc.atOnce, tc.unsized)
			err := tc.call()
			code := ""
			var re *regerr.Error
			if errors.As(err, &re) {
				code = re.Code
			} else if errors.Is(err, ErrBlobCorrupt) {
				code = "corrupt"
			} else if err != nil {
				t.Fatalf("error %v, want %q", err, tc.wantCode)
			}
			if code != tc.wantCode {
				t.Fatalf("error %v (code %q), want %q", err, code, tc.wantCode)
			}
			if tc.maxCalls > 0 && len(rd.calls) > tc.maxCalls {
				t.Errorf("%d backend calls %v, want at most %d", len(rd.calls), rd.calls, tc.maxCalls)
			}
		})
	}
}

// TestUploadLookupsAtOnce: completing an upload looks the upload's marker up while it
// looks up whether the blob is stored already (a PUT with the whole body), and resumes the
// session while it does (a chunked upload's PUT).
func TestUploadLookupsAtOnce(t *testing.T) {
	ctx := context.Background()
	rd := &rendezvousDriver{Driver: inmemory.New(), t: t, waitFor: 10 * time.Second}
	rd.reset(false, false)
	r := newTestRegistry(t, rd)
	for _, tc := range []struct {
		name    string
		chunked bool
	}{{"PUT with the whole body", false}, {"chunked upload's PUT", true}} {
		t.Run(tc.name, func(t *testing.T) {
			blob := []byte("blob of " + tc.name)
			d := digest.FromBytes(blob)
			u, err := r.StartUpload(ctx, "a/b")
			if err != nil {
				t.Fatal(err)
			}
			body := blob
			if tc.chunked {
				if err := r.AppendUpload(ctx, u, 0, bytes.NewReader(blob)); err != nil {
					t.Fatal(err)
				}
				body = nil
			}
			rd.resetHold("/startedat", false)
			b, err := r.FinishUpload(ctx, u, -1, bytes.NewReader(body), d)
			rd.resetHold("", false)
			if err != nil || b.Size != int64(len(blob)) {
				t.Fatalf("finish: %v (size %d)", err, b.Size)
			}
			got, err := readAll(ctx, r, "a/b", d)
			if err != nil || !bytes.Equal(got, blob) {
				t.Fatalf("read back %q (%v)", got, err)
			}
		})
	}
}

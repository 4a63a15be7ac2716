package storage

import (
	"time"

	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/inmemory"
)

func TestVerifiedSet(t *testing.T) {
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	for _, tc := range []struct {
		name string
		adds [][2]string // digest, version
		d    digest.Digest
		v    string
		want bool
	}{
		{"unknown blob", nil, a, "v1", false},
		{"same version", [][2]string{{a.String(), "v1"}}, a, "v1", true},
		{"other version", [][2]string{{a.String(), "v1"}}, a, "v2", false},
		{"replaced version", [][2]string{{a.String(), "v1"}, {a.String(), "v2"}}, a, "v1", false},
		{"empty version is never known", [][2]string{{a.String(), ""}}, a, "", false},
		{"other blob", [][2]string{{b.String(), "v1"}}, a, "v1", false},
		{"bounded: one of three forgotten", [][2]string{{a.String(), "v"}, {b.String(), "v"}, {c.String(), "v"}}, c, "v", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newVerifiedSet(2)
			for _, add := range tc.adds {
				s.add(digest.Digest(add[0]), add[1])
			}
			if got := s.has(tc.d, tc.v); got != tc.want {
				t.Errorf("has(%s, %q) = %v, want %v", tc.d, tc.v, got, tc.want)
			}
			if len(s.m) > 2 {
				t.Errorf("set holds %d entries, capacity 2", len(s.m))
			}
		})
	}
}

// lyingDriver serves every object with one bit flipped while reporting the real version,
// the one case the verified set trusts the backend for; with cut set, its first stream
// fails after cut bytes and later streams report another version.
type lyingDriver struct {
	driver.Driver
	flip   bool
	cut    int64
	opened int
}

func (l *lyingDriver) Reader(ctx context.Context, p string, off, n int64) (io.ReadCloser, error) {
	rc, err := l.Driver.Reader(ctx, p, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	v := driver.ReaderVersion(rc)
	if l.flip && len(b) > 0 {
		b[len(b)/2] ^= 1
	}
	l.opened++
	var r io.Reader = bytes.NewReader(b)
	if l.cut > 0 {
		if l.opened == 1 {
			r = io.MultiReader(io.LimitReader(r, l.cut), &failing{})
		} else {
			v += "-replaced"
		}
	}
	return driver.WithVersion(io.NopCloser(r), v), nil
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func newTestRegistry(t *testing.T, d driver.Driver) *Registry {
	t.Helper()
	r, err := New(d, Options{Secret: []byte("0123456789abcdef0123"), GCAnnounce: testAnnounce})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readBlob(t *testing.T, r *Registry, repo string, d digest.Digest) ([]byte, error) {
	t.Helper()
	b, err := r.StatBlob(context.Background(), repo, d)
	if err != nil {
		t.Fatal(err)
	}
	br, err := r.OpenBlob(context.Background(), b, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	var out bytes.Buffer
	_, err = br.WriteTo(&out)
	return out.Bytes(), err
}

// TestVerifiedReads: a process that wrote a blob serves that very version without hashing
// it again (shown by a backend that alters bytes but not the version); a process that did
// not write it hashes and cuts the response; a resumed stream of another version fails
// instead of being spliced on.
func TestVerifiedReads(t *testing.T) {
	ctx := context.Background()
	mem := inmemory.New()
	blob := []byte(strings.Repeat("registryd verified read ", 4000))
	d := digest.FromBytes(blob)

	writer := newTestRegistry(t, mem)
	if _, err := writer.PutBlob(ctx, "a/b", bytes.NewReader(blob), d); err != nil {
		t.Fatal(err)
	}
	lying := &lyingDriver{Driver: mem, flip: true}
	trusting := &Registry{d: lying, opts: writer.opts, verified: writer.verified}
	if got, err := readBlob(t, trusting, "a/b", d); err != nil || len(got) != len(blob) {
		t.Fatalf("verified version: %d bytes, %v; want the whole stream, unhashed", len(got), err)
	}

	fresh := newTestRegistry(t, lying)
	got, err := readBlob(t, fresh, "a/b", d)
	if !errors.Is(err, ErrBlobCorrupt) || len(got) >= len(blob) {
		t.Fatalf("unverified version: %d bytes, %v; want ErrBlobCorrupt before the last byte", len(got), err)
	}

	// Once a full read of a version has hashed correctly, that version is trusted too.
	honest := newTestRegistry(t, mem)
	if got, err := readBlob(t, honest, "a/b", d); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("honest read: %d bytes, %v", len(got), err)
	}
	fi, err := mem.Stat(ctx, blobDataPath(d))
	if err != nil || !honest.verified.has(d, fi.Version) {
		t.Fatalf("a verified full read was not remembered (%v)", err)
	}

	cut := &lyingDriver{Driver: mem, cut: 1000}
	got, err = readBlob(t, &Registry{d: cut, opts: writer.opts, verified: writer.verified}, "a/b", d)
	if !errors.Is(err, ErrBlobCorrupt) || len(got) != 1000 {
		t.Fatalf("resumed onto another version: %d bytes, %v; want 1000 bytes and ErrBlobCorrupt", len(got), err)
	}
}

// testAnnounce is the GC announce period of test registries: short, so a first run waits
// little, and the background checks of whether the bucket is collected run often.
const testAnnounce = 40 * time.Millisecond

package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/fault"
	"github.com/registryd/registryd/driver/inmemory"
)

// fsckFixture is a consistent registry written straight through the driver:
//
//	app:   image M1 (config C1, layers L1 L2) tagged v1; index IDX (child M1) tagged multi;
//	       referrer R1 (config C1, subject M1), untagged, with its referrer record
//	lib/x: image M2 (config C2, layer L1) tagged latest
type fsckFixture struct {
	d      driver.Driver
	names  map[digest.Digest]string
	digest map[string]digest.Digest
}

func (fx *fsckFixture) put(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := fx.d.Put(context.Background(), p, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

func (fx *fsckFixture) del(t *testing.T, p string) {
	t.Helper()
	if err := fx.d.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

// blob stores b under name and returns its digest.
func (fx *fsckFixture) blob(t *testing.T, name string, b []byte) digest.Digest {
	d := digest.FromBytes(b)
	fx.put(t, blobDataPath(d), b)
	fx.names[d], fx.digest[name] = name, d
	return d
}

func (fx *fsckFixture) link(t *testing.T, p string, d digest.Digest) {
	fx.put(t, p, []byte(d.String()))
}

func desc(mt string, d digest.Digest) string {
	return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":1}`, mt, d)
}

func newFsckFixture(t *testing.T) *fsckFixture {
	fx := &fsckFixture{d: inmemory.New(), names: map[digest.Digest]string{}, digest: map[string]digest.Digest{}}
	c1, c2 := fx.blob(t, "C1", []byte(`{"c":1}`)), fx.blob(t, "C2", []byte(`{"c":2}`))
	l1, l2 := fx.blob(t, "L1", []byte("layer one")), fx.blob(t, "L2", []byte("layer two"))
	image := func(c digest.Digest, extra string, layers ...digest.Digest) []byte {
		ls := make([]string, len(layers))
		for i, l := range layers {
			ls[i] = desc("application/vnd.oci.image.layer.v1.tar", l)
		}
		return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` +
			desc("application/vnd.oci.image.config.v1+json", c) + `,"layers":[` + strings.Join(ls, ",") + `]` + extra + `}`)
	}
	m1 := fx.blob(t, "M1", image(c1, "", l1, l2))
	m2 := fx.blob(t, "M2", image(c2, "", l1))
	idx := fx.blob(t, "IDX", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
		desc(MediaTypeOCIManifest, m1)+`]}`))
	r1 := fx.blob(t, "R1", image(c1, `,"subject":`+desc(MediaTypeOCIManifest, m1)))
	for _, d := range []digest.Digest{c1, l1, l2} {
		fx.link(t, layerLinkPath("app", d), d)
	}
	for _, d := range []digest.Digest{m1, idx, r1} {
		fx.link(t, revisionLinkPath("app", d), d)
	}
	fx.link(t, tagCurrentPath("app", "v1"), m1)
	fx.link(t, tagIndexLinkPath("app", "v1", m1), m1)
	fx.link(t, tagCurrentPath("app", "multi"), idx)
	fx.put(t, referrerPath("app", m1, r1), []byte(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+r1.String()+`","size":1}`))
	for _, d := range []digest.Digest{c2, l1} {
		fx.link(t, layerLinkPath("lib/x", d), d)
	}
	fx.link(t, revisionLinkPath("lib/x", m2), m2)
	fx.link(t, tagCurrentPath("lib/x", "latest"), m2)
	return fx
}

// key names a finding by kind, repository, tag and the fixture names of its digests.
func (fx *fsckFixture) key(f Finding) string {
	name := func(d digest.Digest) string {
		if n, ok := fx.names[d]; ok {
			return n
		}
		return d.String()
	}
	s := string(f.Kind)
	if f.Repository != "" {
		s += " " + f.Repository
	}
	if f.Tag != "" {
		s += ":" + f.Tag
	}
	if f.Manifest != "" {
		s += " m=" + name(f.Manifest)
	}
	if f.Digest != "" {
		s += " d=" + name(f.Digest)
	}
	if f.Repaired {
		s += " repaired"
	}
	return strings.TrimSpace(s)
}

// run runs Fsck and returns the keys of its findings, sorted.
func (fx *fsckFixture) run(t *testing.T, opts FsckOptions) ([]string, FsckSummary) {
	t.Helper()
	r := newTestRegistry(t, fx.d)
	var mu sync.Mutex
	got := []string{}
	opts.Report = func(f Finding) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fx.key(f))
		if f.Path == "" || f.Message == "" || !strings.Contains(f.String(), string(f.Kind)) {
			t.Errorf("finding %+v lacks a path or message", f)
		}
	}
	sum, err := r.Fsck(context.Background(), opts)
	if err != nil {
		t.Fatalf("Fsck: %v", err)
	}
	if sum.Total() != len(got) {
		t.Errorf("summary counts %d findings, %d reported", sum.Total(), len(got))
	}
	slices.Sort(got)
	return got, sum
}

func TestFsck(t *testing.T) {
	repair := FsckOptions{Repair: true}
	repairTags := FsckOptions{Repair: true, RepairTags: true}
	tests := []struct {
		name  string
		brk   func(t *testing.T, fx *fsckFixture)
		opts  FsckOptions
		want  []string
		after []string // findings of a plain re-run
	}{
		{name: "consistent", brk: func(*testing.T, *fsckFixture) {}, opts: repairTags},
		{name: "layer data missing", brk: func(t *testing.T, fx *fsckFixture) {
			fx.del(t, blobDataPath(fx.digest["L2"]))
		}, want: []string{"link-blob-missing app d=L2", "manifest-blob-missing app m=M1 d=L2"},
			after: []string{"link-blob-missing app d=L2", "manifest-blob-missing app m=M1 d=L2"}},
		{name: "layer data missing, repaired", brk: func(t *testing.T, fx *fsckFixture) {
			fx.del(t, blobDataPath(fx.digest["L2"]))
		}, opts: repair, want: []string{"link-blob-missing app d=L2 repaired", "manifest-blob-missing app m=M1 d=L2"},
			after: []string{"manifest-blob-missing app m=M1 d=L2"}},
		{name: "config data missing, shared by a referrer", brk: func(t *testing.T, fx *fsckFixture) {
			fx.del(t, blobDataPath(fx.digest["C1"]))
		}, opts: repair, want: []string{"link-blob-missing app d=C1 repaired", "manifest-blob-missing app m=M1 d=C1", "manifest-blob-missing app m=R1 d=C1"},
			after: []string{"manifest-blob-missing app m=M1 d=C1", "manifest-blob-missing app m=R1 d=C1"}},
		{name: "manifest data missing: tags kept without repair-tags", brk: func(t *testing.T, fx *fsckFixture) {
			fx.del(t, blobDataPath(fx.digest["M1"]))
		}, opts: repair, want: []string{"link-blob-missing app d=M1 repaired", "manifest-child-missing app m=IDX d=M1", "tag-manifest-missing app:v1 m=M1"},
			after: []string{"manifest-child-missing app m=IDX d=M1", "tag-manifest-missing app:v1 m=M1"}},
		{name: "manifest data missing, tags repaired", brk: func(t *testing.T, fx *fsckFixture) {
			fx.del(t, blobDataPath(fx.digest["M1"]))
		}, opts: repairTags, want: []string{"link-blob-missing app d=M1 repaired", "manifest-child-missing app m=IDX d=M1", "tag-manifest-missing app:v1 m=M1 repaired"},
			after: []string{"manifest-child-missing app m=IDX d=M1"}},
		{name: "revision link missing: tag and index child", brk: func(t *testing.T, fx *fsckFixture) {
			fx.del(t, revisionLinkPath("lib/x", fx.digest["M2"]))
		}, opts: repairTags, want: []string{"orphan-blob d=M2", "tag-manifest-missing lib/x:latest m=M2 repaired"},
			after: []string{"orphan-blob d=M2"}},
		{name: "referrer manifest deleted", brk: func(t *testing.T, fx *fsckFixture) {
			fx.del(t, revisionLinkPath("app", fx.digest["R1"]))
		}, opts: repair, want: []string{"orphan-blob d=R1", "referrer-dangling app m=R1 d=M1 repaired"},
			after: []string{"orphan-blob d=R1"}},
		{name: "layer link missing", brk: func(t *testing.T, fx *fsckFixture) {
			fx.del(t, layerLinkPath("lib/x", fx.digest["C2"]))
		}, opts: repairTags, want: []string{"manifest-link-missing lib/x m=M2 d=C2", "orphan-blob d=C2"},
			after: []string{"manifest-link-missing lib/x m=M2 d=C2", "orphan-blob d=C2"}},
		{name: "corrupt tag link", brk: func(t *testing.T, fx *fsckFixture) {
			fx.put(t, tagCurrentPath("app", "multi"), []byte("not a digest"))
		}, opts: repair, want: []string{"tag-link-corrupt app:multi"}, after: []string{"tag-link-corrupt app:multi"}},
		{name: "corrupt tag link, repaired", brk: func(t *testing.T, fx *fsckFixture) {
			fx.put(t, tagCurrentPath("app", "multi"), []byte("not a digest"))
		}, opts: repairTags, want: []string{"tag-link-corrupt app:multi repaired"}},
		{name: "tag without current link", brk: func(t *testing.T, fx *fsckFixture) {
			fx.del(t, tagCurrentPath("app", "v1"))
		}, opts: repairTags, want: []string{"tag-manifest-missing app:v1 repaired"}},
		{name: "corrupt layer bytes, not verified", brk: func(t *testing.T, fx *fsckFixture) {
			fx.put(t, blobDataPath(fx.digest["L1"]), []byte("layer 1!!"))
		}},
		{name: "corrupt layer bytes, verified", brk: func(t *testing.T, fx *fsckFixture) {
			fx.put(t, blobDataPath(fx.digest["L1"]), []byte("layer 1!!"))
		}, opts: FsckOptions{VerifyDigests: true, Repair: true}, want: []string{"digest-mismatch d=L1"}, after: []string{"digest-mismatch d=L1"}},
		{name: "corrupt manifest bytes, found without verifying", brk: func(t *testing.T, fx *fsckFixture) {
			fx.put(t, blobDataPath(fx.digest["M2"]), []byte(`{"schemaVersion":2}`))
		}, opts: FsckOptions{VerifyDigests: true}, want: []string{"digest-mismatch lib/x d=M2"}, after: []string{"digest-mismatch lib/x d=M2"}},
		{name: "orphan blob", brk: func(t *testing.T, fx *fsckFixture) {
			fx.blob(t, "O", []byte("nobody links me"))
		}, opts: repairTags, want: []string{"orphan-blob d=O"}, after: []string{"orphan-blob d=O"}},
		{name: "repositories pattern", brk: func(t *testing.T, fx *fsckFixture) {
			fx.del(t, blobDataPath(fx.digest["L2"]))
			fx.del(t, layerLinkPath("lib/x", fx.digest["C2"]))
		}, opts: FsckOptions{Repositories: "lib/*"}, want: []string{"manifest-link-missing lib/x m=M2 d=C2"},
			after: []string{"manifest-link-missing lib/x m=M2 d=C2"}},
		{name: "repositories subtree pattern", brk: func(t *testing.T, fx *fsckFixture) {
			fx.del(t, layerLinkPath("lib/x", fx.digest["C2"]))
		}, opts: FsckOptions{Repositories: "**"}, want: []string{"manifest-link-missing lib/x m=M2 d=C2"},
			after: []string{"manifest-link-missing lib/x m=M2 d=C2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFsckFixture(t)
			tc.brk(t, fx)
			got, sum := fx.run(t, tc.opts)
			if !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
				t.Errorf("findings:\n got %q\nwant %q", got, tc.want)
			}
			if sum.OrphansChecked != (tc.opts.Repositories == "") {
				t.Errorf("OrphansChecked %v with pattern %q", sum.OrphansChecked, tc.opts.Repositories)
			}
			if sum.Repositories == 0 || sum.Manifests == 0 {
				t.Errorf("summary %+v counts nothing", sum)
			}
			if tc.opts.VerifyDigests && sum.BlobsVerified == 0 {
				t.Errorf("summary %+v verified nothing", sum)
			}
			rerun := tc.opts
			rerun.Repair, rerun.RepairTags = false, false
			got, _ = fx.run(t, rerun)
			if !slices.Equal(got, tc.after) && len(got)+len(tc.after) > 0 {
				t.Errorf("findings of the re-run:\n got %q\nwant %q", got, tc.after)
			}
		})
	}
}

// TestFsckRepairNeverDeletesData checks a repair leaves every blob's data in place.
func TestFsckRepairNeverDeletesData(t *testing.T) {
	fx := newFsckFixture(t)
	fx.del(t, revisionLinkPath("app", fx.digest["R1"]))
	fx.del(t, blobDataPath(fx.digest["M1"]))
	fx.blob(t, "O", []byte("orphan"))
	fx.run(t, FsckOptions{Repair: true, RepairTags: true})
	for name, d := range fx.digest {
		if name == "M1" {
			continue
		}
		if _, err := fx.d.Stat(context.Background(), blobDataPath(d)); err != nil {
			t.Errorf("blob %s after repair: %v", name, err)
		}
	}
}

// TestFsckBackendError checks a failing backend call ends the run with the error and is
// never reported as a finding.
func TestFsckBackendError(t *testing.T) {
	// allowed: the findings a run may still make (true ones, found by calls that work)
	// before the failing call ends it.
	for _, tc := range []struct {
		method  string
		allowed []FindingKind
	}{
		{fault.List, nil},
		{fault.Stat, nil},
		{fault.Reader, []FindingKind{FindingLinkBlobMissing}},
		{fault.Delete, []FindingKind{FindingLinkBlobMissing, FindingManifestBlobMissing}},
	} {
		t.Run(tc.method, func(t *testing.T) {
			fx := newFsckFixture(t)
			// A state where every method is needed: missing data to confirm and repair.
			fx.del(t, blobDataPath(fx.digest["L2"]))
			fd := fault.New(fx.d)
			fd.Add(fault.Rule{Methods: []string{tc.method}, Err: driver.ErrUnavailable})
			r := newTestRegistry(t, fd)
			var mu sync.Mutex
			var got []Finding
			_, err := r.Fsck(context.Background(), FsckOptions{Repair: true, Report: func(f Finding) {
				mu.Lock()
				got = append(got, f)
				mu.Unlock()
			}})
			if !errors.Is(err, driver.ErrUnavailable) {
				t.Fatalf("Fsck: %v, want ErrUnavailable", err)
			}
			for _, f := range got {
				if !slices.Contains(tc.allowed, f.Kind) || (f.Repaired && tc.method == fault.Delete) {
					t.Errorf("finding reported despite the failing %s: %+v", tc.method, f)
				}
			}
			if tc.method != fault.Reader {
				if _, err := fx.d.Stat(context.Background(), layerLinkPath("app", fx.digest["L2"])); err != nil {
					t.Errorf("the link was removed despite the failing %s: %v", tc.method, err)
				}
			}
		})
	}
}

func TestFsckBadPattern(t *testing.T) {
	r := newTestRegistry(t, inmemory.New())
	if _, err := r.Fsck(context.Background(), FsckOptions{Repositories: "["}); err == nil {
		t.Error("Fsck with pattern [ succeeded")
	}
}

package storage

import (
	"errors"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestParseReferences(t *testing.T) {
	c := digest.FromString("config")
	l1, l2 := digest.FromString("l1"), digest.FromString("l2")
	m1 := digest.FromString("m1")
	s := digest.FromString("subject")
	tests := []struct {
		name    string
		body    string
		want    References
		wantErr bool
	}{
		{"image", `{"schemaVersion":2,"config":{"mediaType":"a","digest":"` + c.String() + `","size":1},"layers":[{"mediaType":"b","digest":"` + l1.String() + `","size":1},{"mediaType":"b","digest":"` + l2.String() + `","size":1}]}`,
			References{Blobs: []digest.Digest{c, l1, l2}}, false},
		{"foreign layer skipped", `{"schemaVersion":2,"config":{"mediaType":"a","digest":"` + c.String() + `","size":1},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"` + l1.String() + `","size":1,"urls":["http://x"]}]}`,
			References{Blobs: []digest.Digest{c}}, false},
		{"index with subject", `{"schemaVersion":2,"manifests":[{"mediaType":"m","digest":"` + m1.String() + `","size":1}],"subject":{"mediaType":"m","digest":"` + s.String() + `","size":1}}`,
			References{Manifests: []digest.Digest{m1}, Subject: s}, false},
		{"schema1", `{"schemaVersion":1,"fsLayers":[{"blobSum":"` + l1.String() + `"}]}`,
			References{Blobs: []digest.Digest{l1}}, false},
		{"not json", `nope`, References{}, true},
		{"no references", `{"schemaVersion":2}`, References{}, true},
		{"bad digest", `{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:zz","size":1}}`, References{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseReferences([]byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, errUnknownManifest) {
					t.Fatalf("err = %v, want errUnknownManifest", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Blobs, tt.want.Blobs) || !slices.Equal(got.Manifests, tt.want.Manifests) || got.Subject != tt.want.Subject {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

package storage

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestPaths(t *testing.T) {
	d := digest.Digest("sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
	s := digest.Digest("sha512:" + "ab" + string(make([]byte, 0)) + "cd")
	for _, tc := range []struct{ got, want string }{
		{blobDataPath(d), "docker/registry/v2/blobs/sha256/ab/abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789/data"},
		{layerLinkPath("a/b", d), "docker/registry/v2/repositories/a/b/_layers/sha256/abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789/link"},
		{revisionLinkPath("a", d), "docker/registry/v2/repositories/a/_manifests/revisions/sha256/abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789/link"},
		{tagCurrentPath("a", "v1"), "docker/registry/v2/repositories/a/_manifests/tags/v1/current/link"},
		{tagIndexLinkPath("a", "v1", d), "docker/registry/v2/repositories/a/_manifests/tags/v1/index/sha256/abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789/link"},
		{uploadDataPath("a", "u1"), "docker/registry/v2/repositories/a/_uploads/u1/data"},
		{uploadStartedPath("a", "u1"), "docker/registry/v2/repositories/a/_uploads/u1/startedat"},
		{uploadAckedPath("a", "u1"), "docker/registry/v2/repositories/a/_uploads/u1/acknowledged"},
		{gcTouchedPath(d), "docker/registry/v2/_gc/touched/sha256-abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"},
		{gcSweepingPath(), "docker/registry/v2/_gc/sweeping"},
		{gcStartedPath(), "docker/registry/v2/_gc/started"},
		{GCPlanPath(), "docker/registry/v2/_gc/plan.json"},
		{tagIndexDir("a", "v1"), "docker/registry/v2/repositories/a/_manifests/tags/v1/index"},
		{revisionsDir("a/b"), "docker/registry/v2/repositories/a/b/_manifests/revisions"},
		{layersDir("a/b"), "docker/registry/v2/repositories/a/b/_layers"},
		{referrerPath("a", s, d), "docker/registry/v2/repositories/a/_referrers/sha512/abcd/sha256-abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"},
	} {
		if tc.got != tc.want {
			t.Errorf("got  %s\nwant %s", tc.got, tc.want)
		}
	}
}

package handlers

import "testing"

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want route
		ok   bool
	}{
		{"", route{kind: kindBase}, true},
		{"_catalog", route{kind: kindCatalog}, true},
		{"a/tags/list", route{kindTags, "a", ""}, true},
		{"a/b/c/tags/list", route{kindTags, "a/b/c", ""}, true},
		{"a/blobs/uploads/", route{kindUpload, "a", ""}, true},
		{"a/blobs/uploads", route{kindUpload, "a", ""}, true},
		{"a/b/blobs/uploads/1234", route{kindUpload, "a/b", "1234"}, true},
		{"a/blobs/sha256:abc", route{kindBlob, "a", "sha256:abc"}, true},
		{"blobs/blobs/sha256:abc", route{kindBlob, "blobs", "sha256:abc"}, true},
		{"a/manifests/latest", route{kindManifest, "a", "latest"}, true},
		{"x/manifests/y/manifests/v1", route{kindManifest, "x/manifests/y", "v1"}, true},
		{"a/referrers/sha256:abc", route{kindReferrers, "a", "sha256:abc"}, true},
		{"a/blobs/uploads/id/extra", route{}, false},
		{"a/manifests/", route{}, false},
		{"/manifests/x", route{}, false},
		{"tags/list", route{}, false},
		{"a/unknown/x", route{}, false},
		{"a", route{}, false},
	} {
		got, ok := parseRoute(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseRoute(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

package handlers

import "strings"

// Route kinds of the /v2 API.
const (
	kindBase      = "base"
	kindCatalog   = "catalog"
	kindBlob      = "blob"
	kindUpload    = "upload"
	kindManifest  = "manifest"
	kindTags      = "tags"
	kindReferrers = "referrers"
)

// route is a parsed /v2 request path. Repository names contain "/", so the path is parsed
// from its end: the last ".../blobs/...", ".../manifests/..." etc. wins.
type route struct {
	kind string
	name string // repository
	ref  string // digest, tag, or upload id ("" when starting an upload)
}

// parseRoute parses the path below "/v2/" (without the leading "/v2/"). It does not
// validate the name or reference; it reports false when the path is no API endpoint.
func parseRoute(p string) (route, bool) {
	switch p {
	case "":
		return route{kind: kindBase}, true
	case "_catalog":
		return route{kind: kindCatalog}, true
	}
	if name, ok := strings.CutSuffix(p, "/tags/list"); ok && name != "" {
		return route{kind: kindTags, name: name}, true
	}
	if name, ok := strings.CutSuffix(p, "/blobs/uploads/"); ok && name != "" {
		return route{kind: kindUpload, name: name}, true
	}
	if name, ok := strings.CutSuffix(p, "/blobs/uploads"); ok && name != "" {
		return route{kind: kindUpload, name: name}, true
	}
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return route{}, false
	}
	head, last := p[:i], p[i+1:]
	if last == "" {
		return route{}, false
	}
	for _, k := range []struct{ seg, kind string }{
		{"/blobs/uploads", kindUpload},
		{"/manifests", kindManifest},
		{"/blobs", kindBlob},
		{"/referrers", kindReferrers},
	} {
		if name, ok := strings.CutSuffix(head, k.seg); ok && name != "" {
			return route{kind: k.kind, name: name, ref: last}, true
		}
	}
	return route{}, false
}

package handlers

import (
	"net/http"
	"strings"
)

// location turns path (an absolute path with optional query, such as
// /v2/<name>/blobs/uploads/<id>?_state=…) into the value of a Location header for req.
//
// The path gets Options.Prefix first (http.prefix). Relative (the default): the path as it is; clients resolve it against the URL they asked,
// which stays right behind any proxy. With Options.AbsoluteURLs the origin comes from, in
// order: Options.Host (http.host); X-Forwarded-Proto and X-Forwarded-Host (first entry
// each, as a proxy that terminates TLS sets them; either may be absent, the request's
// own value stands in); the request's scheme and Host header.
func (a *api) location(req *http.Request, path string) string {
	path = a.opts.Prefix + path
	if !a.opts.AbsoluteURLs {
		return path
	}
	if h := a.opts.Host; h != nil {
		return h.Scheme + "://" + h.Host + path
	}
	scheme, host := "http", req.Host
	if req.TLS != nil {
		scheme = "https"
	}
	if p := strings.ToLower(firstEntry(req.Header.Get("X-Forwarded-Proto"))); p == "http" || p == "https" {
		scheme = p
	}
	if h := firstEntry(req.Header.Get("X-Forwarded-Host")); validHost(h) {
		host = h
	}
	if !validHost(host) {
		// No usable origin (an HTTP/1.0 request without Host): stay relative.
		return path
	}
	return scheme + "://" + host + path
}

// firstEntry returns the first comma-separated entry of a forwarding header, the one the
// outermost proxy set.
func firstEntry(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

// validHost accepts host[:port] (a name, IPv4 or bracketed IPv6 address) and nothing that
// could change the meaning of the URL it is put into.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune(".-_:[]", r):
		default:
			return false
		}
	}
	return true
}

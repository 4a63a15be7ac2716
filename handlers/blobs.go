package handlers

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/opencontainers/go-digest"

	regerr "github.com/registryd/registryd/errors"
	"github.com/registryd/registryd/storage"
)

// getBlob serves GET and HEAD /v2/<name>/blobs/<digest>.
//
// 200 with the bytes (or 307 to a pre-signed backend URL when redirects are on), 206 for
// a satisfiable Range, 304 when If-None-Match holds the ETag; 400 DIGEST_INVALID, 404
// BLOB_UNKNOWN, 416 RANGE_INVALID with Content-Range "bytes */size". Headers:
// Content-Length, Docker-Content-Digest, ETag, Accept-Ranges.
func (a *api) getBlob(c echo.Context, name, ref string) error {
	d, err := storage.ParseDigest(ref)
	if err != nil {
		return err
	}
	req := c.Request()
	rangeHdr := req.Header.Get("Range")
	ctx := req.Context()
	if req.Method == http.MethodGet && rangeHdr == "" && req.Header.Get("If-None-Match") == "" && !a.reg.Redirects() {
		return a.streamBlob(c, name, d)
	}
	stat := a.reg.StatBlob
	if req.Method == http.MethodGet {
		stat = a.reg.StatBlobForRead
	}
	b, err := stat(ctx, name, d)
	if err != nil {
		return err
	}
	etag := blobHeaders(c.Response().Header(), d)
	if etagMatch(req.Header.Get("If-None-Match"), etag) {
		return c.NoContent(http.StatusNotModified)
	}
	h := c.Response().Header()
	offset, length, partial, err := parseRange(rangeHdr, b.Size)
	if err != nil {
		return err
	}
	if req.Method == http.MethodGet && !partial {
		u, err := a.reg.BlobURL(ctx, d)
		if err != nil {
			return err
		}
		if u != "" {
			return c.Redirect(http.StatusTemporaryRedirect, u)
		}
	}
	h.Set(echo.HeaderContentType, "application/octet-stream")
	h.Set(echo.HeaderContentLength, strconv.FormatInt(length, 10))
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", offset, offset+length-1, b.Size))
	}
	if req.Method == http.MethodHead || length == 0 {
		return c.NoContent(status)
	}
	// Open before the status line goes out, so a backend that fails to answer is still
	// a clean 500 (or 404 if the bytes are truly gone).
	br, err := a.reg.OpenBlob(ctx, b, offset, length)
	if err != nil {
		return err
	}
	defer br.Close()
	c.Response().WriteHeader(status)
	// Errors from here on cut the response short (the declared Content-Length is not
	// reached), so a client never takes a broken stream for the blob.
	_, err = br.WriteTo(c.Response())
	return err
}

// streamBlob serves a plain GET of a whole blob (no Range, no If-None-Match, redirects
// off), the common pull: the backend opens the stream while the repository's link is
// looked up, and the stream says the size, so the bytes start after one backend round
// trip.
func (a *api) streamBlob(c echo.Context, name string, d digest.Digest) error {
	br, err := a.reg.OpenBlobForRead(c.Request().Context(), name, d)
	if err != nil {
		return err
	}
	defer br.Close()
	h := c.Response().Header()
	blobHeaders(h, d)
	size := br.Info().Size
	h.Set(echo.HeaderContentType, "application/octet-stream")
	h.Set(echo.HeaderContentLength, strconv.FormatInt(size, 10))
	c.Response().WriteHeader(http.StatusOK)
	if size == 0 {
		return nil
	}
	// As in getBlob, an error from here on cuts the response short.
	_, err = br.WriteTo(c.Response())
	return err
}

// blobHeaders sets the headers every blob response carries and returns the ETag.
func blobHeaders(h http.Header, d digest.Digest) string {
	etag := `"` + d.String() + `"`
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", etag)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "max-age=31536000")
	return etag
}

// etagMatch reports whether an If-None-Match header lists etag (or is "*").
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// parseRange parses a single "bytes=a-b", "bytes=a-" or "bytes=-n" range against size.
// No header means the whole blob. A malformed or unsatisfiable range is 416 RANGE_INVALID
// with Content-Range "bytes */size".
func parseRange(h string, size int64) (offset, length int64, partial bool, err error) {
	if h == "" {
		return 0, size, false, nil
	}
	bad := func() error {
		return regerr.RangeInvalid.WithDetail(map[string]any{"range": h, "size": size}).
			WithHeader("Content-Range", fmt.Sprintf("bytes */%d", size))
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, false, bad()
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, false, bad()
	}
	num := func(s string) (int64, bool) {
		if s == "" || strings.TrimLeft(s, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	switch {
	case first == "": // suffix: last n bytes
		n, ok := num(last)
		if !ok || n == 0 || size == 0 {
			return 0, 0, false, bad()
		}
		n = min(n, size)
		return size - n, n, true, nil
	default:
		start, ok := num(first)
		if !ok || start >= size {
			return 0, 0, false, bad()
		}
		end := size - 1
		if last != "" {
			e, ok := num(last)
			if !ok || e < start {
				return 0, 0, false, bad()
			}
			end = min(e, size-1)
		}
		return start, end - start + 1, true, nil
	}
}

// deleteBlob serves DELETE /v2/<name>/blobs/<digest>: 202, or 404 BLOB_UNKNOWN, 405 when
// deletes are disabled.
func (a *api) deleteBlob(c echo.Context, name, ref string) error {
	d, err := storage.ParseDigest(ref)
	if err != nil {
		return err
	}
	if err := a.reg.DeleteBlob(c.Request().Context(), name, d); err != nil {
		return err
	}
	return c.NoContent(http.StatusAccepted)
}

package handlers

import (
	"io"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	regerr "github.com/registryd/registryd/errors"
	"github.com/registryd/registryd/storage"
)

// validateRef checks a manifest reference: a digest or a tag.
func validateRef(ref string) error {
	if storage.IsDigest(ref) {
		_, err := storage.ParseDigest(ref)
		return err
	}
	return storage.ValidateTag(ref)
}

// getManifest serves GET and HEAD /v2/<name>/manifests/<reference>.
//
// 200 with the stored manifest and its own media type whatever Accept lists (HEAD: the
// same headers, no body); 304 on a matching If-None-Match; 400 TAG_INVALID /
// DIGEST_INVALID; 404 MANIFEST_UNKNOWN. Headers: Content-Type, Content-Length,
// Docker-Content-Digest, ETag.
func (a *api) getManifest(c echo.Context, name, ref string) error {
	if err := validateRef(ref); err != nil {
		return err
	}
	m, err := a.reg.GetManifest(c.Request().Context(), name, ref)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	etag := `"` + m.Digest.String() + `"`
	h.Set("Docker-Content-Digest", m.Digest.String())
	h.Set("ETag", etag)
	if etagMatch(c.Request().Header.Get("If-None-Match"), etag) {
		return c.NoContent(http.StatusNotModified)
	}
	h.Set(echo.HeaderContentType, m.MediaType)
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(m.Body)))
	c.Response().WriteHeader(http.StatusOK)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, err = c.Response().Write(m.Body)
	return err
}

// putManifest serves PUT /v2/<name>/manifests/<reference>[?tag=...].
//
// 201 with Location, Docker-Content-Digest and OCI-Subject when the manifest has a subject;
// 400 MANIFEST_INVALID / MANIFEST_BLOB_UNKNOWN / MANIFEST_UNKNOWN (missing index child) /
// DIGEST_INVALID / TAG_INVALID; 413 SIZE_INVALID over the manifest size limit.
func (a *api) putManifest(c echo.Context, name, ref string) error {
	if err := validateRef(ref); err != nil {
		return err
	}
	tags := c.QueryParams()["tag"]
	for _, t := range tags {
		if err := storage.ValidateTag(t); err != nil {
			return err
		}
	}
	req := c.Request()
	limit := a.opts.MaxManifestBytes
	if req.ContentLength > limit {
		return regerr.ManifestTooLarge.WithDetail(map[string]int64{"limit": limit, "size": req.ContentLength})
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return regerr.ManifestInvalid.WithMessage("reading manifest body failed").WithCause(err)
	}
	if int64(len(body)) > limit {
		return regerr.ManifestTooLarge.WithDetail(map[string]int64{"limit": limit})
	}
	m, err := a.reg.PutManifest(req.Context(), name, ref, body, req.Header.Get(echo.HeaderContentType), tags)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Location", a.location(req, "/v2/"+name+"/manifests/"+m.Digest.String()))
	h.Set("Docker-Content-Digest", m.Digest.String())
	if m.Subject != "" {
		h.Set("OCI-Subject", m.Subject.String())
	}
	for _, t := range m.Tags {
		h.Add("OCI-Tag", t)
	}
	h.Set(echo.HeaderContentLength, "0")
	return c.NoContent(http.StatusCreated)
}

// deleteManifest serves DELETE /v2/<name>/manifests/<reference>: by digest removes the
// manifest and the tags pointing at it, by tag removes the tag. 202; 404 MANIFEST_UNKNOWN;
// 405 UNSUPPORTED when deletes are disabled.
func (a *api) deleteManifest(c echo.Context, name, ref string) error {
	if err := validateRef(ref); err != nil {
		return err
	}
	if err := a.reg.DeleteManifest(c.Request().Context(), name, ref); err != nil {
		return err
	}
	return c.NoContent(http.StatusAccepted)
}

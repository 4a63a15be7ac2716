package handlers

import (
	"errors"
	"net/http"
	"regexp"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/opencontainers/go-digest"

	regerr "github.com/registryd/registryd/errors"
	"github.com/registryd/registryd/storage"
)

func uploadLocation(name string, u *storage.Upload, token string) string {
	return "/v2/" + name + "/blobs/uploads/" + u.ID + "?_state=" + token
}

func blobLocation(name string, d digest.Digest) string {
	return "/v2/" + name + "/blobs/" + d.String()
}

// setUploadHeaders writes Location, Range and Docker-Upload-UUID for an open upload.
func (a *api) setUploadHeaders(c echo.Context, name string, u *storage.Upload) {
	h := c.Response().Header()
	h.Set("Location", a.location(c.Request(), uploadLocation(name, u, a.reg.Token(u))))
	h.Set("Range", u.RangeHeader())
	h.Set("Docker-Upload-UUID", u.ID)
	h.Set(echo.HeaderContentLength, "0")
}

// startUpload serves POST /v2/<name>/blobs/uploads/.
//
// ?mount=<digest>&from=<repo>: 201 with Location when from holds the blob and the caller
// may pull from it, else a normal upload (so a mount never reveals what exists).
// ?digest=<digest> with a body: monolithic upload, 201. Otherwise 202 with Location
// (signed state), Range 0-0 and Docker-Upload-UUID. 400 NAME_INVALID / DIGEST_INVALID.
func (a *api) startUpload(c echo.Context, name string) error {
	req := c.Request()
	ctx := req.Context()
	q := req.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		d, err := storage.ParseDigest(mount)
		if err != nil {
			return err
		}
		from := q.Get("from")
		if from != "" {
			if err := storage.ValidateName(from); err != nil {
				return err
			}
		}
		if a.mayMount(c, from) {
			ok, err := a.reg.MountBlob(ctx, name, from, d)
			if err != nil {
				return err
			}
			if ok {
				return a.blobCreated(c, name, d)
			}
		}
	} else if dg := q.Get("digest"); dg != "" {
		d, err := storage.ParseDigest(dg)
		if err != nil {
			return err
		}
		if _, err := a.reg.PutBlob(ctx, name, req.Body, d); err != nil {
			return err
		}
		return a.blobCreated(c, name, d)
	}
	u, err := a.reg.StartUpload(ctx, name)
	if err != nil {
		return err
	}
	u.Owner = identity(c).Owner()
	a.setUploadHeaders(c, name, u)
	return c.NoContent(http.StatusAccepted)
}

func (a *api) blobCreated(c echo.Context, name string, d digest.Digest) error {
	h := c.Response().Header()
	h.Set("Location", a.location(c.Request(), blobLocation(name, d)))
	h.Set("Docker-Content-Digest", d.String())
	h.Set(echo.HeaderContentLength, "0")
	return c.NoContent(http.StatusCreated)
}

// upload parses the upload id and signed state of the request; a state issued to another
// identity is 404 BLOB_UPLOAD_UNKNOWN.
func (a *api) upload(c echo.Context, name, id string) (*storage.Upload, error) {
	return a.reg.ParseUpload(name, identity(c).Owner(), id, c.Request().URL.Query().Get("_state"))
}

var contentRangeRe = regexp.MustCompile(`^(?:bytes[ =])?([0-9]{1,18})-([0-9]{1,18})(?:/(?:[0-9]+|\*))?$`)

// chunkStart validates Content-Range (and its agreement with Content-Length) and returns
// the chunk's first offset, or -1 when the request has no Content-Range.
func chunkStart(c echo.Context, u *storage.Upload) (int64, error) {
	cr := c.Request().Header.Get("Content-Range")
	if cr == "" {
		return -1, nil
	}
	m := contentRangeRe.FindStringSubmatch(cr)
	if m == nil {
		return 0, regerr.BlobUploadOutOfOrder.WithMessage("malformed Content-Range %q", cr).
			WithHeader("Range", u.RangeHeader())
	}
	start, _ := strconv.ParseInt(m[1], 10, 64)
	end, _ := strconv.ParseInt(m[2], 10, 64)
	if end < start {
		return 0, regerr.BlobUploadOutOfOrder.WithMessage("Content-Range %q ends before it starts", cr).
			WithHeader("Range", u.RangeHeader())
	}
	if cl := c.Request().ContentLength; cl >= 0 && cl != end-start+1 {
		return 0, regerr.SizeInvalid.WithMessage("Content-Length %d does not match Content-Range %q", cl, cr)
	}
	return start, nil
}

// patchUpload serves PATCH /v2/<name>/blobs/uploads/<id>: streams the body into the
// upload. 202 with the new Location and Range; 416 with Range when the chunk does not
// start at the upload's offset (or the state was replayed); 404 BLOB_UPLOAD_UNKNOWN.
func (a *api) patchUpload(c echo.Context, name, id string) error {
	u, err := a.upload(c, name, id)
	if err != nil {
		return err
	}
	start, err := chunkStart(c, u)
	if err != nil {
		return err
	}
	if err := a.reg.AppendUpload(c.Request().Context(), u, start, c.Request().Body); err != nil {
		return a.withLocation(c, err, name, u)
	}
	a.setUploadHeaders(c, name, u)
	return c.NoContent(http.StatusAccepted)
}

// withLocation adds the upload's current Location to a 416 so the client can resume.
func (a *api) withLocation(c echo.Context, err error, name string, u *storage.Upload) error {
	if regerr.Of(err, regerr.BlobUploadOutOfOrder) {
		var e *regerr.Error
		if errors.As(err, &e) {
			e.WithHeader("Location", a.location(c.Request(), uploadLocation(name, u, a.reg.Token(u))))
		}
	}
	return err
}

// putUpload serves PUT /v2/<name>/blobs/uploads/<id>?digest=: appends the optional last
// chunk, verifies the digest and completes the blob. 201 with Location and
// Docker-Content-Digest; 400 DIGEST_INVALID (upload discarded); 404 BLOB_UPLOAD_UNKNOWN; 416.
func (a *api) putUpload(c echo.Context, name, id string) error {
	u, err := a.upload(c, name, id)
	if err != nil {
		return err
	}
	d, err := storage.ParseDigest(c.QueryParam("digest"))
	if err != nil {
		return err
	}
	start, err := chunkStart(c, u)
	if err != nil {
		return err
	}
	if _, err := a.reg.FinishUpload(c.Request().Context(), u, start, c.Request().Body, d); err != nil {
		return a.withLocation(c, err, name, u)
	}
	return a.blobCreated(c, name, d)
}

// uploadStatus serves GET /v2/<name>/blobs/uploads/<id>: 204 with Location and Range, or
// 404 BLOB_UPLOAD_UNKNOWN.
func (a *api) uploadStatus(c echo.Context, name, id string) error {
	u, err := a.upload(c, name, id)
	if err != nil {
		return err
	}
	if err := a.reg.UploadStatus(c.Request().Context(), u); err != nil {
		return err
	}
	a.setUploadHeaders(c, name, u)
	return c.NoContent(http.StatusNoContent)
}

// cancelUpload serves DELETE /v2/<name>/blobs/uploads/<id>: 204, then the upload is
// unknown; 404 BLOB_UPLOAD_UNKNOWN.
func (a *api) cancelUpload(c echo.Context, name, id string) error {
	u, err := a.upload(c, name, id)
	if err != nil {
		return err
	}
	if err := a.reg.CancelUpload(c.Request().Context(), u); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

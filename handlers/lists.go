package handlers

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/labstack/echo/v4"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	regerr "github.com/registryd/registryd/errors"
	"github.com/registryd/registryd/storage"
)

// pagination parses n and last. n absent means the configured cap; n above the cap is
// capped (a Link header then leads on); a non-number or negative n is 400
// PAGINATION_NUMBER_INVALID.
func (a *api) pagination(c echo.Context) (int, string, error) {
	n := a.opts.MaxListEntries
	if s := c.QueryParam("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return 0, "", regerr.PaginationNumberInvalid.WithDetail(map[string]string{"n": s})
		}
		n = min(v, a.opts.MaxListEntries)
	}
	return n, c.QueryParam("last"), nil
}

func (a *api) setLink(c echo.Context, path string, n int, last string) {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	c.Response().Header().Set("Link", `<`+a.opts.Prefix+path+"?"+q.Encode()+`>; rel="next"`)
}

func writeJSON(c echo.Context, status int, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderContentType, contentType)
	return c.Blob(status, contentType, b)
}

// tags serves GET /v2/<name>/tags/list?n=&last=: 200 {"name","tags"} in lexical order with
// a Link header when more follow; 400 PAGINATION_NUMBER_INVALID / TAG_INVALID; 404
// NAME_UNKNOWN.
func (a *api) tags(c echo.Context, name string) error {
	n, last, err := a.pagination(c)
	if err != nil {
		return err
	}
	if last != "" {
		if err := storage.ValidateTag(last); err != nil {
			return err
		}
	}
	tags, more, err := a.reg.Tags(c.Request().Context(), name, last, n)
	if err != nil {
		return err
	}
	if more {
		a.setLink(c, "/v2/"+name+"/tags/list", n, tags[len(tags)-1])
	}
	return writeJSON(c, http.StatusOK, echo.MIMEApplicationJSON, map[string]any{"name": name, "tags": tags})
}

// catalog serves GET /v2/_catalog?n=&last=: 200 {"repositories"} in lexical order with a
// Link header when more follow, only those the caller may pull under access control;
// 400 PAGINATION_NUMBER_INVALID / NAME_INVALID.
func (a *api) catalog(c echo.Context) error {
	n, last, err := a.pagination(c)
	if err != nil {
		return err
	}
	if last != "" {
		if err := storage.ValidateName(last); err != nil {
			return err
		}
	}
	repos, more, err := a.catalogPage(c, last, n)
	if err != nil {
		return err
	}
	if more && len(repos) > 0 {
		a.setLink(c, "/v2/_catalog", n, repos[len(repos)-1])
	}
	return writeJSON(c, http.StatusOK, echo.MIMEApplicationJSON, map[string]any{"repositories": repos})
}

// catalogPage returns up to n repositories after last that the caller may see, and
// whether more follow. Under access control it reads the walk only as far as the n+1-th
// repository the caller may see.
func (a *api) catalogPage(c echo.Context, last string, n int) ([]string, bool, error) {
	if a.opts.Auth == nil {
		return a.reg.Catalog(c.Request().Context(), last, n)
	}
	repos := []string{}
	for r, err := range a.reg.Repositories(c.Request().Context(), last) {
		if err != nil {
			return nil, false, err
		}
		if !a.listable(c, r) {
			continue
		}
		if len(repos) == n {
			return repos, true, nil
		}
		repos = append(repos, r)
	}
	return repos, false, nil
}

// referrers serves GET /v2/<name>/referrers/<digest>[?artifactType=]: 200 with an OCI
// image index of the manifests whose subject is digest (empty when none), filtered by
// artifactType with OCI-Filters-Applied; 400 DIGEST_INVALID.
func (a *api) referrers(c echo.Context, name, ref string) error {
	d, err := storage.ParseDigest(ref)
	if err != nil {
		return err
	}
	at := c.QueryParam("artifactType")
	descs, err := a.reg.Referrers(c.Request().Context(), name, d, at)
	if err != nil {
		return err
	}
	if at != "" {
		c.Response().Header().Set("OCI-Filters-Applied", "artifactType")
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: descs}
	idx.SchemaVersion = 2
	return writeJSON(c, http.StatusOK, ocispec.MediaTypeImageIndex, idx)
}

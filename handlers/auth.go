package handlers

import (
	"net"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/registryd/registryd/auth"
	"github.com/registryd/registryd/storage"
)

// identityKey is the echo.Context key of the caller's auth.Identity.
const identityKey = "identity"

// authorize checks the parsed request against Options.Auth (when set) with the scopes
// its route and method need, and keeps the caller's identity in the context.
func (a *api) authorize(c echo.Context, rt route) error {
	if a.opts.Auth == nil {
		return nil
	}
	id, err := a.opts.Auth.Authorize(c.Request(), remoteAddr(c), neededScopes(c.Request(), rt))
	if err != nil {
		return err
	}
	c.Set(identityKey, id)
	return nil
}

// remoteAddr is the caller's address for the log: the configured IPExtractor's answer
// when one is set (trusted proxies), else the connection's peer, never a header the
// caller could forge.
func remoteAddr(c echo.Context) string {
	if c.Echo().IPExtractor != nil {
		return c.RealIP()
	}
	host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
	if err != nil {
		return c.Request().RemoteAddr
	}
	return host
}

// neededScopes returns what a request needs, as the token specification names it: the
// base endpoint needs an authenticated caller and nothing else; the catalog needs
// registry:catalog:*; reads need pull, deletes delete, and every write (uploads included,
// whatever their method) pull and push. A mount names pull on its source repository as
// an optional scope: the handler mounts only when the caller has it.
func neededScopes(r *http.Request, rt route) []auth.Scope {
	switch rt.kind {
	case kindBase:
		return nil
	case kindCatalog:
		return []auth.Scope{auth.CatalogScope()}
	}
	var need []auth.Scope
	switch {
	case rt.kind == kindUpload:
		need = []auth.Scope{auth.RepositoryScope(rt.name, auth.Pull, auth.Push)}
		q := r.URL.Query()
		if from := q.Get("from"); r.Method == http.MethodPost && q.Get("mount") != "" && from != "" &&
			from != rt.name && storage.ValidateName(from) == nil {
			src := auth.RepositoryScope(from, auth.Pull)
			src.Optional = true
			need = append(need, src)
		}
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		need = []auth.Scope{auth.RepositoryScope(rt.name, auth.Pull)}
	case r.Method == http.MethodDelete:
		need = []auth.Scope{auth.RepositoryScope(rt.name, auth.Delete)}
	default:
		need = []auth.Scope{auth.RepositoryScope(rt.name, auth.Pull, auth.Push)}
	}
	return need
}

// identity returns the caller's identity (anonymous when access control is off).
func identity(c echo.Context) auth.Identity {
	id, _ := c.Get(identityKey).(auth.Identity)
	return id
}

// mayMount reports whether the caller may mount a blob from repository from: only when
// it may pull from there, so that a mount never reveals what it could not read. With
// access control on, a mount without a source (any repository's blob) never happens.
func (a *api) mayMount(c echo.Context, from string) bool {
	if a.opts.Auth == nil {
		return true
	}
	return from != "" && a.opts.Auth.Allows(identity(c), from, auth.Pull)
}

// listable reports whether the catalog shows repository to the caller.
func (a *api) listable(c echo.Context, repository string) bool {
	return a.opts.Auth == nil || a.opts.Auth.Lists(identity(c), repository)
}

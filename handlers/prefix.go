package handlers

import (
	"strings"

	"github.com/labstack/echo/v4"
)

// stripPrefix serves requests under prefix (http.prefix, without a trailing slash) as if
// they came without it: /my/registry/v2/... is routed as /v2/.... Other paths are left as
// they are.
func stripPrefix(prefix string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if rest, ok := strings.CutPrefix(r.URL.Path, prefix); ok && (rest == "" || strings.HasPrefix(rest, "/")) {
				r.URL.Path = rest
				if r.URL.RawPath != "" {
					r.URL.RawPath = strings.TrimPrefix(r.URL.RawPath, prefix)
				}
				if r.URL.Path == "" {
					r.URL.Path = "/"
				}
			}
			return next(c)
		}
	}
}

// Package handlers serves the OCI Distribution API v1.1 with Echo over a storage.Registry.
// Each handler parses and validates its request (before any backend call), calls storage
// and writes the response; every error leaves through one HTTPErrorHandler that writes the
// OCI error envelope (errors.ToHTTP) and logs server faults once.
//
// Who may import it: cmd/registryd and tests. It never imports a driver.
package handlers

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/registryd/registryd/auth"
	regerr "github.com/registryd/registryd/errors"
	"github.com/registryd/registryd/storage"
)

// Options configures the HTTP API.
type Options struct {
	// Registry serves the requests. Required.
	Registry *storage.Registry
	// Logger receives one line per request and the causes of 5xx responses (default: discard).
	Logger *slog.Logger
	// DeleteEnabled allows DELETE of manifests, tags and blobs; otherwise 405 UNSUPPORTED.
	DeleteEnabled bool
	// ReadOnly refuses every write with 405 UNSUPPORTED.
	ReadOnly bool
	// MaxManifestBytes bounds manifest bodies (default 4 MiB); larger ones get 413.
	MaxManifestBytes int64
	// MaxListEntries caps n for tags, catalog (default 1000).
	MaxListEntries int
	// Metrics, when set, receives the request metrics and is served on /metrics.
	Metrics *prometheus.Registry
	// ServeOps serves /metrics, /healthz and /readyz on this Echo (set false when they
	// have their own listener, see NewOps).
	ServeOps bool
	// Auth, when set, authenticates and authorizes every /v2 request (see authorize);
	// nil answers anyone.
	Auth auth.Authorizer
	// AbsoluteURLs makes Location headers absolute URLs (see location.go); otherwise
	// they are paths relative to the request's origin.
	AbsoluteURLs bool
	// Host, when set with AbsoluteURLs, is the externally reachable scheme://host[:port]
	// (http.host) that absolute Location headers start with.
	Host *url.URL
	// Readiness answers /readyz (default: a read check of Registry, see NewReadiness).
	Readiness *Readiness
	// Prefix is the path the API is served under (http.prefix, "/my/registry", no trailing
	// slash; "" for the root): requests under it are served with it removed, and Location
	// and Link headers carry it. Requests without it are served as well.
	Prefix string
	// NoAccessLog drops the request lines of requests answered below 500
	// (log.accesslog.disabled); 5xx responses are still logged.
	NoAccessLog bool
}

type api struct {
	reg  *storage.Registry
	log  *slog.Logger
	opts Options
}

// New returns the Echo instance serving the API.
func New(opts Options) (*echo.Echo, error) {
	if opts.Registry == nil {
		return nil, errors.New("handlers: nil registry")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxManifestBytes == 0 {
		opts.MaxManifestBytes = 4 << 20
	}
	if opts.MaxListEntries == 0 {
		opts.MaxListEntries = 1000
	}
	a := &api{reg: opts.Registry, log: opts.Logger, opts: opts}
	e := echo.New()
	// The request log names the peer the connection came from: X-Forwarded-For and
	// X-Real-IP are whatever a client chose to send.
	e.IPExtractor = echo.ExtractIPDirect()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = a.handleError
	e.Pre(requestID)
	if opts.Prefix != "" {
		e.Pre(stripPrefix(opts.Prefix))
	}
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, DisablePrintStack: true}))
	e.Use(middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		HandleError: true, LogStatus: true, LogMethod: true, LogURIPath: true, LogLatency: true,
		LogRequestID: true, LogResponseSize: true, LogRemoteIP: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			level := slog.LevelInfo
			if v.Status >= 500 {
				level = slog.LevelWarn
			} else if opts.NoAccessLog {
				return nil
			}
			a.log.LogAttrs(c.Request().Context(), level, "request",
				slog.String("method", v.Method), slog.String("path", v.URIPath), slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency), slog.Int64("bytes_out", v.ResponseSize),
				slog.String("remote_ip", v.RemoteIP), slog.String("request_id", v.RequestID))
			return nil
		},
	}))
	if opts.Metrics != nil {
		m, err := newMetrics(opts.Metrics)
		if err != nil {
			return nil, err
		}
		e.Use(m.middleware)
	}
	e.Any("/v2", a.dispatch)
	e.Any("/v2/", a.dispatch)
	e.Any("/v2/*", a.dispatch)
	if opts.Readiness == nil {
		opts.Readiness = NewReadiness(opts.Registry.Ping, 0, opts.Logger)
	}
	if opts.ServeOps {
		addOps(e, opts.Readiness, opts.Metrics)
	}
	return e, nil
}

// NewOps returns an Echo for the separate debug listener (http.debug.addr): /metrics,
// /healthz, /readyz (answered by ready) and the Go profiler under /debug/pprof/. The
// profiler is never served on the registry's own listener.
func NewOps(ready *Readiness, metrics *prometheus.Registry) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	addOps(e, ready, metrics)
	e.GET("/debug/pprof/*", echo.WrapHandler(http.HandlerFunc(pprofHandler)))
	return e
}

// pprofHandler serves net/http/pprof's index, named profiles and the CPU profile and
// trace endpoints.
func pprofHandler(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r)
	}
}

func addOps(e *echo.Echo, ready *Readiness, metrics *prometheus.Registry) {
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", ready.handler())
	if metrics != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(metrics, promhttp.HandlerOpts{})))
	}
}

// requestID sets X-Request-Id (keeping a sane one from the client) before routing.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if len(id) == 0 || len(id) > 64 || strings.ContainsAny(id, "\r\n") {
			b := make([]byte, 8)
			_, _ = rand.Read(b)
			id = hex.EncodeToString(b)
			c.Request().Header.Set(echo.HeaderXRequestID, id)
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

// handleError is the only place errors become responses.
func (a *api) handleError(err error, c echo.Context) {
	req := c.Request()
	var he *echo.HTTPError
	if errors.As(err, &he) {
		// Echo's own errors (no route, method not allowed, body limit) in the OCI envelope.
		switch he.Code {
		case http.StatusNotFound:
			err = regerr.NameUnknown.WithMessage("no such endpoint").WithCause(err)
		case http.StatusMethodNotAllowed:
			err = regerr.New(regerr.Unsupported).WithCause(err)
		case http.StatusRequestEntityTooLarge:
			err = regerr.New(regerr.ManifestTooLarge).WithCause(err)
		}
	}
	status, header, body, internal := regerr.ToHTTP(err)
	if internal {
		a.log.ErrorContext(req.Context(), "request failed", "method", req.Method, "path", req.URL.Path,
			"status", status, "request_id", req.Header.Get(echo.HeaderXRequestID), "error", err)
	}
	if c.Response().Committed {
		if !internal {
			a.log.WarnContext(req.Context(), "error after response started", "path", req.URL.Path,
				"request_id", req.Header.Get(echo.HeaderXRequestID), "error", err)
		}
		return
	}
	h := c.Response().Header()
	for k, vs := range header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	h.Set("Docker-Distribution-API-Version", "registry/2.0")
	if status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", `Basic realm="registryd"`)
	}
	if req.Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.JSONBlob(status, body)
}

// dispatch routes /v2/... by parsing the path (names contain "/") and validating the name.
func (a *api) dispatch(c echo.Context) error {
	c.Response().Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := strings.TrimPrefix(strings.TrimPrefix(c.Request().URL.Path, "/v2"), "/")
	rt, ok := parseRoute(p)
	if !ok {
		return regerr.NameUnknown.WithMessage("no such endpoint")
	}
	if rt.name != "" {
		if err := storage.ValidateName(rt.name); err != nil {
			return err
		}
	}
	if err := a.authorize(c, rt); err != nil {
		return err
	}
	m := c.Request().Method
	write := m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch || m == http.MethodDelete
	if write && a.opts.ReadOnly {
		return regerr.Unsupported.WithMessage("registry is in read-only mode")
	}
	if m == http.MethodDelete && rt.kind != kindUpload && !a.opts.DeleteEnabled {
		return regerr.Unsupported.WithMessage("deletes are disabled")
	}
	c.Set("route", rt.kind)
	switch rt.kind {
	case kindBase:
		if m != http.MethodGet && m != http.MethodHead {
			return regerr.New(regerr.Unsupported)
		}
		return c.JSONBlob(http.StatusOK, []byte("{}"))
	case kindCatalog:
		return only(c, a.catalog, http.MethodGet)
	case kindTags:
		return only(c, func(c echo.Context) error { return a.tags(c, rt.name) }, http.MethodGet)
	case kindReferrers:
		return only(c, func(c echo.Context) error { return a.referrers(c, rt.name, rt.ref) }, http.MethodGet)
	case kindBlob:
		switch m {
		case http.MethodGet, http.MethodHead:
			return a.getBlob(c, rt.name, rt.ref)
		case http.MethodDelete:
			return a.deleteBlob(c, rt.name, rt.ref)
		}
	case kindManifest:
		switch m {
		case http.MethodGet, http.MethodHead:
			return a.getManifest(c, rt.name, rt.ref)
		case http.MethodPut:
			return a.putManifest(c, rt.name, rt.ref)
		case http.MethodDelete:
			return a.deleteManifest(c, rt.name, rt.ref)
		}
	case kindUpload:
		if rt.ref == "" {
			return only(c, func(c echo.Context) error { return a.startUpload(c, rt.name) }, http.MethodPost)
		}
		switch m {
		case http.MethodPatch:
			return a.patchUpload(c, rt.name, rt.ref)
		case http.MethodPut:
			return a.putUpload(c, rt.name, rt.ref)
		case http.MethodGet:
			return a.uploadStatus(c, rt.name, rt.ref)
		case http.MethodDelete:
			return a.cancelUpload(c, rt.name, rt.ref)
		}
	}
	return regerr.Unsupported.WithMessage("method %s not supported here", m)
}

func only(c echo.Context, h echo.HandlerFunc, method string) error {
	m := c.Request().Method
	if m == method || (method == http.MethodGet && m == http.MethodHead) {
		return h(c)
	}
	return regerr.Unsupported.WithMessage("method %s not supported here", m)
}

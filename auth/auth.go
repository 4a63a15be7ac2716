package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	regerr "github.com/registryd/registryd/errors"
)

// Actions on a repository.
const (
	Pull   = "pull"
	Push   = "push"
	Delete = "delete"
)

// Scope is one resource and the actions a request needs on it, written as in the Docker
// token specification: "repository:team/app:pull,push" or "registry:catalog:*".
type Scope struct {
	// Type is "repository" or "registry".
	Type string
	// Name is the repository, or "catalog" for the registry type.
	Name string
	// Actions are the actions needed (pull, push, delete, or "*" for the catalog).
	Actions []string
	// Optional scopes are named in challenges, so that clients ask for them, but a
	// request lacking them is not refused: the handler checks them itself with
	// Authorizer.Allows (the source repository of a cross-repository mount).
	Optional bool
}

// RepositoryScope returns the scope of actions on repository name.
func RepositoryScope(name string, actions ...string) Scope {
	return Scope{Type: "repository", Name: name, Actions: actions}
}

// CatalogScope returns the scope that lists repositories: registry:catalog:*.
func CatalogScope() Scope {
	return Scope{Type: "registry", Name: "catalog", Actions: []string{"*"}}
}

// String formats s as the token specification does: type:name:action[,action...].
func (s Scope) String() string {
	return s.Type + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// Identity is who made a request. The zero value is the anonymous caller.
type Identity struct {
	// Name is the user name (htpasswd) or the token's subject ("" when anonymous, and for
	// a token without a subject).
	Name string
	// Authenticated reports whether the caller presented valid credentials.
	Authenticated bool
	// grants are the token's access claims, resource ("type:name") to actions; nil
	// outside token authentication.
	grants map[string]map[string]bool
}

// Owner returns the opaque string an upload is bound to, so that an upload started by
// one identity cannot be continued by another. It is empty for the anonymous caller.
func (id Identity) Owner() string {
	if !id.Authenticated {
		return ""
	}
	return "user:" + id.Name
}

// granted reports whether the token grants action on resource typ:name ("*" grants all).
func (id Identity) granted(typ, name, action string) bool {
	acts := id.grants[typ+":"+name]
	return acts[action] || acts["*"]
}

// Authorizer is what handlers need: check a request, and ask about optional permissions.
type Authorizer interface {
	// Authorize authenticates r (remote is the caller's address, for the log) and checks
	// that it may do every action of every non-optional scope in need; an empty need asks
	// only that the caller be authenticated (GET /v2/). It returns the caller's identity,
	// or an *errors.Error: 401 UNAUTHORIZED with a WWW-Authenticate challenge naming need
	// (no credentials, or invalid ones), or 403 DENIED (an identity without the action).
	Authorize(r *http.Request, remote string, need []Scope) (Identity, error)
	// Allows reports whether id may perform action on repository, for permissions that
	// change what a request does rather than fail it (a mount's source repository).
	Allows(id Identity, repository, action string) bool
	// Lists reports whether the catalog shows repository to id, which the catalog scope
	// has admitted.
	Lists(id Identity, repository string) bool
}

// Options configures a Controller. Exactly one of Htpasswd and Token must be set.
type Options struct {
	// Htpasswd authenticates with HTTP Basic against an htpasswd file.
	Htpasswd *HtpasswdOptions
	// Token authenticates with bearer tokens of the Docker token specification.
	Token *TokenOptions
	// Groups maps a group name to its users (token subjects under token auth).
	Groups map[string][]string
	// Rules grant actions on repositories. Without rules every authenticated user may do
	// everything (htpasswd) or what its token grants (token); with rules, a token's grants
	// and the rules must both allow an action. Anonymous rules admit every caller.
	Rules []Rule
	// Logger receives failed logins (default: discard). Credentials are never logged.
	Logger *slog.Logger
	// Metrics, when set, receives registryd_auth_failures_total{reason}.
	Metrics prometheus.Registerer
	// ReloadInterval is how often Run checks the htpasswd file for changes (default 2s).
	ReloadInterval time.Duration
}

// Rule grants Actions on the repositories matching the glob Repository ("*" within a
// path component, "**" across components, "?" one character other than "/") to Users
// ("*": every authenticated caller), to the members of Groups and, with Anonymous, to
// every caller.
type Rule struct {
	Repository string
	Users      []string
	Groups     []string
	Anonymous  bool
	Actions    []string
}

// Failure reasons, the values of the reason label of registryd_auth_failures_total.
const (
	reasonMalformed   = "malformed_credentials"
	reasonCredentials = "invalid_credentials"
	reasonToken       = "invalid_token"
)

// Controller implements Authorizer for the configured authentication and rules.
type Controller struct {
	htpasswd *htpasswd
	token    *tokenVerifier
	rules    *rules
	realm    string // Basic realm
	log      *slog.Logger
	failures *prometheus.CounterVec
	interval time.Duration
}

var _ Authorizer = (*Controller)(nil)

// New builds a Controller: it reads and checks the htpasswd file or the token keys, and
// compiles the rules. A missing or malformed file is an error naming the file (and line).
func New(opts Options) (*Controller, error) {
	if (opts.Htpasswd == nil) == (opts.Token == nil) {
		return nil, errors.New("auth: exactly one of htpasswd and token must be configured")
	}
	c := &Controller{log: opts.Logger, interval: opts.ReloadInterval}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.interval <= 0 {
		c.interval = 2 * time.Second
	}
	var err error
	if h := opts.Htpasswd; h != nil {
		c.realm = h.Realm
		if c.realm == "" {
			c.realm = "registryd"
		}
		if c.htpasswd, err = openHtpasswd(h.Path); err != nil {
			return nil, err
		}
	}
	if t := opts.Token; t != nil {
		if c.token, err = newTokenVerifier(*t); err != nil {
			return nil, err
		}
	}
	if len(opts.Rules) > 0 {
		if c.rules, err = compileRules(opts.Rules, opts.Groups); err != nil {
			return nil, err
		}
	}
	c.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "registryd_auth_failures_total",
		Help: "Failed authentications (wrong or unknown credentials, invalid tokens) by reason.",
	}, []string{"reason"})
	for _, r := range []string{reasonMalformed, reasonCredentials, reasonToken} {
		c.failures.WithLabelValues(r)
	}
	if opts.Metrics != nil {
		if err := opts.Metrics.Register(c.failures); err != nil {
			return nil, fmt.Errorf("auth: register metrics: %w", err)
		}
	}
	return c, nil
}

// Authorize implements Authorizer.
func (c *Controller) Authorize(r *http.Request, remote string, need []Scope) (Identity, error) {
	id, err := c.authenticate(r, remote, need)
	if err != nil {
		return Identity{}, err
	}
	if len(need) == 0 && !id.Authenticated {
		return Identity{}, c.unauthorized(need, "")
	}
	for _, s := range need {
		if s.Optional {
			continue
		}
		for _, act := range s.Actions {
			if c.allows(id, s.Type, s.Name, act) {
				continue
			}
			if !id.Authenticated {
				return Identity{}, c.unauthorized(need, "")
			}
			return Identity{}, c.denied(need)
		}
	}
	return id, nil
}

// Allows implements Authorizer.
func (c *Controller) Allows(id Identity, repository, action string) bool {
	return c.allows(id, "repository", repository, action)
}

// Lists implements Authorizer: with rules, the repositories the rules let id pull;
// without, all of them (the catalog scope admitted the caller).
func (c *Controller) Lists(id Identity, repository string) bool {
	if c.rules == nil {
		return true
	}
	return c.rules.allow(id, repository, Pull)
}

func (c *Controller) allows(id Identity, typ, name, action string) bool {
	if typ == "registry" {
		if name != "catalog" || !id.Authenticated {
			return false
		}
		return c.token == nil || id.granted(typ, name, action)
	}
	if c.rules != nil && c.rules.anonymous(name, action) {
		return true
	}
	if !id.Authenticated {
		return false
	}
	if c.token != nil && !id.granted(typ, name, action) {
		return false
	}
	return c.rules == nil || c.rules.allow(id, name, action)
}

// authenticate returns the caller's identity: anonymous without an Authorization header,
// else the one its credentials prove. Invalid credentials are a 401 (logged, counted).
func (c *Controller) authenticate(r *http.Request, remote string, need []Scope) (Identity, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Identity{}, nil
	}
	scheme, cred, _ := strings.Cut(h, " ")
	reqID := r.Header.Get("X-Request-Id")
	if c.htpasswd != nil {
		user, pass, ok := r.BasicAuth()
		if !ok || !strings.EqualFold(scheme, "basic") {
			c.fail(r, remote, reasonMalformed, reqID, "", "not HTTP Basic credentials")
			return Identity{}, c.unauthorized(need, "")
		}
		if !c.htpasswd.verify(user, pass) {
			c.fail(r, remote, reasonCredentials, reqID, user, "unknown user or wrong password")
			return Identity{}, c.unauthorized(need, "")
		}
		return Identity{Name: user, Authenticated: true}, nil
	}
	if !strings.EqualFold(scheme, "bearer") || cred == "" {
		c.fail(r, remote, reasonMalformed, reqID, "", "not a bearer token")
		return Identity{}, c.unauthorized(need, "invalid_token")
	}
	id, err := c.token.verify(strings.TrimSpace(cred), time.Now())
	if err != nil {
		c.fail(r, remote, reasonToken, reqID, "", err.Error())
		return Identity{}, c.unauthorized(need, "invalid_token")
	}
	return id, nil
}

// fail logs and counts a failed authentication. why never holds a credential.
func (c *Controller) fail(r *http.Request, remote, reason, reqID, user, why string) {
	c.failures.WithLabelValues(reason).Inc()
	attrs := []slog.Attr{slog.String("remote_addr", remote), slog.String("reason", reason),
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("request_id", reqID),
		slog.String("why", why)}
	if user != "" {
		attrs = append(attrs, slog.String("user", user))
	}
	c.log.LogAttrs(r.Context(), slog.LevelWarn, "authentication failed", attrs...)
}

// challenge formats the WWW-Authenticate value for need, with an RFC 6750 error code
// (invalid_token, insufficient_scope) when errCode is set.
func (c *Controller) challenge(need []Scope, errCode string) string {
	if c.token == nil {
		return `Basic realm="` + c.realm + `"`
	}
	var b strings.Builder
	b.WriteString(`Bearer realm="` + c.token.realm + `",service="` + c.token.service + `"`)
	if len(need) > 0 {
		scopes := make([]string, len(need))
		for i, s := range need {
			scopes[i] = s.String()
		}
		b.WriteString(`,scope="` + strings.Join(scopes, " ") + `"`)
	}
	if errCode != "" {
		b.WriteString(`,error="` + errCode + `"`)
	}
	return b.String()
}

// accessDetail is the detail of 401 and 403 errors: the access the request needs.
type accessDetail struct {
	Type   string `json:"Type"`
	Name   string `json:"Name"`
	Action string `json:"Action"`
}

func details(need []Scope) []accessDetail {
	out := []accessDetail{}
	for _, s := range need {
		for _, a := range s.Actions {
			out = append(out, accessDetail{Type: s.Type, Name: s.Name, Action: a})
		}
	}
	return out
}

func (c *Controller) unauthorized(need []Scope, errCode string) error {
	return regerr.Unauthorized.WithDetail(details(need)).WithHeader("WWW-Authenticate", c.challenge(need, errCode))
}

func (c *Controller) denied(need []Scope) error {
	e := regerr.Denied.WithDetail(details(need))
	if c.token != nil {
		e = e.WithHeader("WWW-Authenticate", c.challenge(need, "insufficient_scope"))
	}
	return e
}

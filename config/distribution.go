package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// This file holds what makes a CNCF Distribution v3 configuration (docs/content/about/
// configuration.md and the storage drivers' parameters) start registryd as it is: the
// Distribution sections registryd types only to act on them (middleware, proxy, policy,
// http.net, the deprecated top-level loglevel), and the two passes over a loaded
// configuration, applyDistribution (before defaults) and validateDistribution (in
// Validate). Keys registryd accepts without acting on them are listed in keys.go
// (distributionOnly); refused sections in securityRelevant.

// MiddlewareEntry is one entry of a Distribution middleware list (middleware.registry,
// middleware.repository, middleware.storage). registryd implements no middleware: an
// entry that is not disabled stops start-up (see validateDistribution).
type MiddlewareEntry struct {
	// Name is the middleware's registered name (cloudfront, redirect, rewrite, ...).
	Name string `yaml:"name"`
	// Disabled turns the entry off, as in Distribution: it is then only warned about.
	Disabled bool `yaml:"disabled"`
	// Options are the middleware's own settings; registryd reads none of them.
	Options map[string]any `yaml:"options"`
}

// Proxy is Distribution's pull-through cache section. registryd does not proxy: with
// RemoteURL set it serves only what the storage holds and refuses writes, as a
// Distribution proxy does (see applyDistribution).
type Proxy struct {
	// RemoteURL is the upstream registry; setting it puts registryd in read-only mode.
	RemoteURL string `yaml:"remoteurl"`
	// Username and Password log in to the upstream; unused.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Exec runs a credential helper for the upstream; unused.
	Exec *ProxyExec `yaml:"exec"`
	// TTL is how long proxied content is kept; unused.
	TTL *time.Duration `yaml:"ttl"`
	// CacheWriteTimeout bounds writes of proxied content; unused.
	CacheWriteTimeout *time.Duration `yaml:"cachewritetimeout"`
}

// ProxyExec is Distribution's credential helper of proxy.exec; unused.
type ProxyExec struct {
	Command  string         `yaml:"command"`
	Lifetime *time.Duration `yaml:"lifetime"`
}

// Policy is Distribution's policy section.
type Policy struct {
	Repository RepositoryPolicy `yaml:"repository"`
}

// RepositoryPolicy restricts pushed content to repository classes (manifest config media
// types) in Distribution. registryd cannot: a non-empty Classes stops start-up.
type RepositoryPolicy struct {
	Classes []string `yaml:"classes"`
}

// AccessLog is Distribution's log.accesslog.
type AccessLog struct {
	// Disabled drops the line logged for each request answered below 500 (5xx responses
	// are still logged, at warn level).
	Disabled bool `yaml:"disabled"`
}

// AuthNone is Distribution's "auth: none": no authentication, as without an auth section.
type AuthNone struct{}

// AzureCredentials is Distribution v3's storage.azure.credentials: how the driver
// authenticates.
type AzureCredentials struct {
	// Type is shared_key (storage.azure.accountkey), client_secret (a Microsoft Entra
	// application: TenantID, ClientID, Secret) or default_credentials (the Azure SDK's
	// default chain: environment, workload identity, managed identity, Azure CLI);
	// "default" is accepted for default_credentials, as Distribution's docs spell it once.
	Type     string `yaml:"type"`
	ClientID string `yaml:"clientid"`
	TenantID string `yaml:"tenantid"`
	Secret   string `yaml:"secret"`
}

// Azure credential types (AzureCredentials.Type).
const (
	AzureSharedKey          = "shared_key"
	AzureClientSecret       = "client_secret"
	AzureDefaultCredentials = "default_credentials"
)

// EffectiveType returns the credential type in force: the configured one ("default" read
// as default_credentials), else shared_key when an account key is set, else
// default_credentials.
func (a *Azure) EffectiveType() string {
	switch {
	case a.Credentials != nil && a.Credentials.Type == "default":
		return AzureDefaultCredentials
	case a.Credentials != nil && a.Credentials.Type != "":
		return a.Credentials.Type
	case a.AccountKey != "":
		return AzureSharedKey
	}
	return AzureDefaultCredentials
}

// s3StorageClasses are the storage classes Distribution accepts (instant retrieval), NONE
// meaning "send none" for S3-compatible stores without storage classes.
var s3StorageClasses = []string{"NONE", "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA",
	"INTELLIGENT_TIERING", "OUTPOSTS", "GLACIER_IR", "EXPRESS_ONEZONE"}

// s3ObjectACLs are S3's canned ACLs that Distribution accepts for storage.s3.objectacl.
var s3ObjectACLs = []string{"private", "public-read", "public-read-write", "authenticated-read",
	"aws-exec-read", "bucket-owner-read", "bucket-owner-full-control"}

// S3LogLevels are the values of storage.s3.loglevel (Distribution's names, any case).
var S3LogLevels = []string{"off", "debug", "debugwithsigning", "debugwithhttpbody",
	"debugwithrequestretries", "debugwithrequesterrors", "debugwitheventstreambody"}

// tokenAlgorithms are the signing algorithms registryd verifies; distributionAlgorithms
// are those Distribution's auth.token.signingalgorithms may list.
var (
	tokenAlgorithms        = []string{"RS256", "ES256", "EdDSA"}
	distributionAlgorithms = []string{"EdDSA", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
		"ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)

// applyDistribution maps Distribution's spellings onto registryd's settings, after the
// file and the environment are read and before defaults: the deprecated top-level
// loglevel, log levels in any case, the logstash formatter (written as JSON lines), S3
// storage classes in any case, disabled middleware entries (warned), short http.secret
// values (warned) and proxy (read-only). Each mapping that changes what a
// Distribution operator would see is listed in c.Ignored as a warning.
func (c *Config) applyDistribution() {
	warn := func(key, reason string) {
		c.Ignored = append(c.Ignored, Notice{Level: slog.LevelWarn, Key: key, Reason: reason})
	}
	if c.LogLevel != "" && c.Log.Level == "" {
		c.Log.Level = c.LogLevel
	}
	c.Log.Level = strings.ToLower(c.Log.Level)
	if strings.EqualFold(c.Log.Formatter, "logstash") {
		c.Log.Formatter = "json"
		warn("log.formatter", "logstash: written as registryd's JSON lines (time, level, msg and the fields)")
	}
	if s := c.Storage.S3; s != nil {
		s.StorageClass = strings.ToUpper(s.StorageClass)
		s.LogLevel = strings.ToLower(s.LogLevel)
		if s.LogLevel == "false" {
			// YAML 1.1 reads "off" as false; Distribution takes both.
			s.LogLevel = "off"
		}
	}
	if n := len(c.HTTP.Secret); n > 0 && n < minSecretLen {
		// Distribution takes any secret (its examples use short ones); so does registryd,
		// loudly: the secret is all that keeps upload state from being forged.
		warn("http.secret", fmt.Sprintf("only %d characters: whoever guesses it can forge upload state; use at least %d random characters (32 or more)", n, minSecretLen))
	}
	for _, point := range sortedKeys(c.Middleware) {
		for i, m := range c.Middleware[point] {
			if m.Disabled {
				warn(fmt.Sprintf("middleware.%s[%d] (%s)", point, i, m.Name), "disabled in the file; registryd implements no middleware")
			}
		}
	}
	if c.Proxy.RemoteURL != "" {
		c.Storage.Maintenance.ReadOnly.Enabled = true
		warn("proxy", "pull-through caching is not implemented: registryd serves only what its storage holds, and "+
			"refuses pushes and deletes (405 UNSUPPORTED) as a Distribution proxy does (storage.maintenance.readonly is on)")
	}
}

// validateDistribution checks the Distribution sections registryd types (see the file
// comment) and the Distribution keys of the storage drivers.
func (c *Config) validateDistribution() error {
	v := &validator{sources: c.sources}
	if p := c.HTTP.Prefix; p != "" && (!strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#%") || strings.Contains(p, "//")) {
		v.errorf("http.prefix", "must be a path with leading and trailing slashes (/my/registry/), got %q", p)
	} else if strings.HasPrefix(p, "/v2/") || strings.Contains(p, "/./") || strings.Contains(p, "/../") {
		// Requests without the prefix are served as well: a prefix under /v2/ would take
		// the root API's own paths (/v2/<name>/...) for prefixed ones.
		v.errorf("http.prefix", "must not be /v2/ or under it, nor hold . or .. segments, got %q", p)
	}
	switch c.HTTP.Net {
	case "", "tcp":
	default:
		v.errorf("http.net", "registryd listens on TCP only (tcp), got %q", c.HTTP.Net)
	}
	for _, point := range sortedKeys(c.Middleware) {
		for i, m := range c.Middleware[point] {
			if m.Disabled {
				continue
			}
			v.errorf(fmt.Sprintf("middleware.%s[%d]", point, i), "%s: %s; registryd refuses to start rather than serve without it (remove the entry or set disabled: true)",
				orUnnamed(m.Name), middlewareWhy(point, m.Name))
		}
	}
	if cl := c.Policy.Repository.Classes; len(cl) > 0 {
		v.errorf("policy.repository.classes", "registryd does not restrict pushed content to repository classes (%s); "+
			"it refuses to start rather than accept content the policy refuses", strings.Join(cl, ", "))
	}
	if t := c.Auth.Token; t != nil && len(t.SigningAlgorithms) > 0 {
		ok := false
		for _, a := range t.SigningAlgorithms {
			if !slices.Contains(distributionAlgorithms, a) {
				v.errorf("auth.token.signingalgorithms", "%q is no signing algorithm (%s)", a, strings.Join(distributionAlgorithms, ", "))
			}
			ok = ok || slices.Contains(tokenAlgorithms, a)
		}
		if !ok {
			v.errorf("auth.token.signingalgorithms", "registryd verifies %s signatures only; the list names none of them",
				strings.Join(tokenAlgorithms, ", "))
		}
	}
	if s := c.Storage.S3; s != nil {
		if s.StorageClass != "" && !slices.Contains(s3StorageClasses, s.StorageClass) {
			v.errorf("storage.s3.storageclass", "must be one of %s, got %q", strings.Join(s3StorageClasses, ", "), s.StorageClass)
		}
		if s.ObjectACL != "" && !slices.Contains(s3ObjectACLs, s.ObjectACL) {
			v.errorf("storage.s3.objectacl", "must be one of %s, got %q", strings.Join(s3ObjectACLs, ", "), s.ObjectACL)
		}
		if s.LogLevel != "" && !slices.Contains(S3LogLevels, s.LogLevel) {
			v.errorf("storage.s3.loglevel", "must be one of %s, got %q", strings.Join(S3LogLevels, ", "), s.LogLevel)
		}
		if s.Accelerate && s.ForcePathStyle {
			v.errorf("storage.s3.accelerate", "S3 Transfer Acceleration needs virtual-hosted-style requests: unset storage.s3.forcepathstyle")
		}
		if s.V4Auth != nil && !*s.V4Auth {
			v.errorf("storage.s3.v4auth", "false (signature version 2) is not supported: registryd signs with SigV4; remove the key or set it true")
		}
		if s.RedirectEndpoint != "" && v.url("storage.s3.redirectendpoint", s.RedirectEndpoint, false) {
			if u := strings.SplitN(strings.SplitN(s.RedirectEndpoint, "://", 2)[1], "/", 2); len(u) == 2 && u[1] != "" {
				v.errorf("storage.s3.redirectendpoint", "must be scheme://host[:port] without a path, got %q", s.RedirectEndpoint)
			}
		}
	}
	if a := c.Storage.Azure; a != nil {
		if a.Realm != "" && (a.ServiceURL != "" || a.Endpoint != "") {
			v.errorf("storage.azure.realm", "set storage.azure.realm or storage.azure.serviceurl, not both")
		}
		switch a.EffectiveType() {
		case AzureSharedKey:
			if a.AccountKey == "" {
				v.errorf("storage.azure.accountkey", "required with storage.azure.credentials.type shared_key")
			}
		case AzureClientSecret:
			cr := a.Credentials
			for _, f := range []struct{ key, val string }{{"tenantid", cr.TenantID}, {"clientid", cr.ClientID}, {"secret", cr.Secret}} {
				if f.val == "" {
					v.errorf("storage.azure.credentials."+f.key, "required with storage.azure.credentials.type client_secret")
				}
			}
		case AzureDefaultCredentials:
		default:
			v.errorf("storage.azure.credentials.type", "must be one of %s, %s, %s, got %q",
				AzureSharedKey, AzureClientSecret, AzureDefaultCredentials, a.Credentials.Type)
		}
	}
	return v.err()
}

func orUnnamed(name string) string {
	if name == "" {
		return "(no name)"
	}
	return name
}

// middlewareWhy says what a Distribution middleware would have done.
func middlewareWhy(point, name string) string {
	switch {
	case point == "storage" && name == "cloudfront":
		return "blob downloads through CloudFront signed URLs (with IP filtering) are not implemented"
	case point == "storage" && name == "redirect":
		return "redirecting blob downloads to a fixed base URL is not implemented (storage.redirect.enable signs backend URLs instead)"
	case point == "storage" && name == "rewrite":
		return "rewriting redirect URLs is not implemented"
	case point == "storage":
		return "storage middleware is not implemented"
	}
	return point + " middleware (access control and other request handling) is not implemented"
}

// GCSCredentials is a Google credentials JSON document (storage.gcs.credentials): a
// string holding the JSON, or, as Distribution documents it, a YAML mapping of its fields
// (type: service_account, project_id, private_key, client_email, ...), kept as JSON.
type GCSCredentials string

// UnmarshalYAML implements yaml.Unmarshaler: a scalar is taken as it is, a mapping is
// encoded as JSON.
func (g *GCSCredentials) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*g = GCSCredentials(n.Value)
		return nil
	case yaml.MappingNode:
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			return err
		}
		b, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
		*g = GCSCredentials(b)
		return nil
	}
	return fmt.Errorf("credentials: want the JSON document as a string or a mapping of its fields, got a list (line %d)", n.Line)
}

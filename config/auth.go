package config

import (
	"fmt"
	"strings"
)

// Auth configures who may use the registry. With neither Htpasswd nor Token set the
// registry answers anyone who reaches it (the default). Htpasswd and Token are exclusive,
// as in CNCF Distribution; Access rules and Groups apply on top of either.
type Auth struct {
	// Htpasswd authenticates users with HTTP Basic against an htpasswd file of bcrypt
	// entries (CNCF Distribution's auth.htpasswd).
	Htpasswd *Htpasswd `yaml:"htpasswd"`
	// Token accepts bearer tokens of the Docker token specification issued by an external
	// token server (CNCF Distribution's auth.token).
	Token *Token `yaml:"token"`
	// None is Distribution's explicit "no authentication" (the same as no section).
	None *AuthNone `yaml:"none"`
	// Groups names sets of users (token subjects under token auth) for Access rules.
	Groups map[string][]string `yaml:"groups"`
	// Access lists the rules that grant actions on repositories. Without rules every
	// authenticated user may do everything (htpasswd) or what its token grants (token).
	Access []AccessRule `yaml:"access"`
}

// Htpasswd is an htpasswd file of "user:bcrypt-hash" lines.
type Htpasswd struct {
	// Realm is the realm of the Basic challenge (default "registryd").
	Realm string `yaml:"realm"`
	// Path is the htpasswd file. It must exist and hold only bcrypt entries; it is re-read
	// when it changes, without a restart.
	Path string `yaml:"path"`
}

// Token configures bearer token authentication.
type Token struct {
	// Realm is the URL of the token server clients are sent to (required).
	Realm string `yaml:"realm"`
	// Service is the name of this registry: tokens must carry it in aud (required).
	Service string `yaml:"service"`
	// Issuer must match the tokens' iss claim (required).
	Issuer string `yaml:"issuer"`
	// RootCertBundle is a PEM file of certificates whose public keys verify token
	// signatures (directly by kid, or as roots of an x5c chain).
	RootCertBundle string `yaml:"rootcertbundle"`
	// JWKS is a JSON Web Key Set file of the signing keys, selected by kid. At least one
	// of RootCertBundle and JWKS is required.
	JWKS string `yaml:"jwks"`
	// SigningAlgorithms restricts the accepted token signatures to these (Distribution's
	// names); registryd verifies RS256, ES256 and EdDSA, so at least one of them must be
	// listed. Empty: all three.
	SigningAlgorithms []string `yaml:"signingalgorithms"`
}

// AccessRule grants Actions on the repositories matching Repository to Users, to the
// members of Groups, and to every caller when Anonymous is set.
type AccessRule struct {
	// Repository is a glob: "*" matches within one path component, "**" across
	// components, "?" one character other than "/".
	Repository string `yaml:"repository"`
	// Users are user names (token subjects under token auth); "*" is every
	// authenticated caller.
	Users []string `yaml:"users"`
	// Groups are names defined in auth.groups.
	Groups []string `yaml:"groups"`
	// Anonymous grants the actions to every caller, with or without credentials.
	Anonymous bool `yaml:"anonymous"`
	// Actions is a non-empty subset of pull, push, delete.
	Actions []string `yaml:"actions"`
}

// validate checks the auth section, naming the offending key. Files are checked when the
// auth controller is built at start-up, which names the file and line.
func (a *Auth) validate() error {
	if a.Htpasswd != nil && a.Token != nil {
		return &Error{Key: "auth", Msg: "set htpasswd or token, not both"}
	}
	if a.None != nil && (a.Htpasswd != nil || a.Token != nil) {
		return &Error{Key: "auth.none", Msg: "set none, htpasswd or token, only one"}
	}
	if h := a.Htpasswd; h != nil {
		if h.Path == "" {
			return &Error{Key: "auth.htpasswd.path", Msg: "required"}
		}
		if err := headerSafe("auth.htpasswd.realm", h.Realm); err != nil {
			return err
		}
	}
	if t := a.Token; t != nil {
		for _, f := range []struct{ key, v string }{
			{"auth.token.realm", t.Realm}, {"auth.token.service", t.Service}, {"auth.token.issuer", t.Issuer},
		} {
			if f.v == "" {
				return &Error{Key: f.key, Msg: "required"}
			}
			if err := headerSafe(f.key, f.v); err != nil {
				return err
			}
		}
		if t.RootCertBundle == "" && t.JWKS == "" {
			return &Error{Key: "auth.token", Msg: "one of auth.token.rootcertbundle and auth.token.jwks is required"}
		}
	}
	if (len(a.Access) > 0 || len(a.Groups) > 0) && a.Htpasswd == nil && a.Token == nil {
		return &Error{Key: "auth.access", Msg: "needs auth.htpasswd or auth.token to identify users"}
	}
	for g, users := range a.Groups {
		if g == "" {
			return &Error{Key: "auth.groups", Msg: "empty group name"}
		}
		for _, u := range users {
			if u == "" {
				return &Error{Key: "auth.groups." + g, Msg: "empty user name"}
			}
		}
	}
	for i, r := range a.Access {
		key := fmt.Sprintf("auth.access[%d]", i)
		if r.Repository == "" {
			return &Error{Key: key + ".repository", Msg: "required"}
		}
		if strings.Contains(r.Repository, "***") {
			return &Error{Key: key + ".repository", Msg: fmt.Sprintf("%q: use * or **", r.Repository)}
		}
		if len(r.Users) == 0 && len(r.Groups) == 0 && !r.Anonymous {
			return &Error{Key: key, Msg: "names no users, groups or anonymous"}
		}
		for _, u := range r.Users {
			if u == "" {
				// A token without a subject has an empty name: never grant by it.
				return &Error{Key: key + ".users", Msg: "empty user name (use anonymous: true for callers without credentials)"}
			}
		}
		for _, g := range r.Groups {
			if _, ok := a.Groups[g]; !ok {
				return &Error{Key: key + ".groups", Msg: fmt.Sprintf("%q is not defined in auth.groups", g)}
			}
		}
		if len(r.Actions) == 0 {
			return &Error{Key: key + ".actions", Msg: "required (pull, push, delete)"}
		}
		for _, act := range r.Actions {
			switch act {
			case "pull", "push", "delete":
			default:
				return &Error{Key: key + ".actions", Msg: fmt.Sprintf("%q is not pull, push or delete", act)}
			}
		}
	}
	return nil
}

// headerSafe refuses values that cannot be quoted into a WWW-Authenticate parameter.
func headerSafe(key, v string) error {
	for _, c := range v {
		if c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			return &Error{Key: key, Msg: fmt.Sprintf("%q contains a quote, backslash or control character", v)}
		}
	}
	return nil
}

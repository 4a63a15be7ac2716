package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/registryd/registryd/auth"
	"github.com/registryd/registryd/config"
)

// newAuth builds the access controller of cfg: it reads the htpasswd file or the token
// keys now, so a missing or malformed file stops start-up with its name (and line). It
// returns a nil Authorizer (anyone may do anything) when neither auth.htpasswd nor
// auth.token is set, and the function that keeps the htpasswd file current until its
// context ends.
func newAuth(cfg config.Auth, log *slog.Logger, metrics prometheus.Registerer) (auth.Authorizer, func(context.Context), error) {
	if cfg.Htpasswd == nil && cfg.Token == nil {
		return nil, func(context.Context) {}, nil
	}
	opts := auth.Options{Groups: cfg.Groups, Logger: log, Metrics: metrics}
	if h := cfg.Htpasswd; h != nil {
		opts.Htpasswd = &auth.HtpasswdOptions{Realm: h.Realm, Path: h.Path}
	}
	if t := cfg.Token; t != nil {
		opts.Token = &auth.TokenOptions{Realm: t.Realm, Service: t.Service, Issuer: t.Issuer,
			RootCertBundle: t.RootCertBundle, JWKS: t.JWKS, Algorithms: t.SigningAlgorithms}
	}
	for _, r := range cfg.Access {
		opts.Rules = append(opts.Rules, auth.Rule{Repository: r.Repository, Users: r.Users, Groups: r.Groups,
			Anonymous: r.Anonymous, Actions: r.Actions})
	}
	ctl, err := auth.New(opts)
	if err != nil {
		return nil, nil, err
	}
	return ctl, ctl.Run, nil
}

package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
)

// settings is what serve makes of the configuration where it differs from what was
// asked for.
type settings struct {
	// redirect: blob GETs may redirect (asked for, not forced off, and the driver signs).
	redirect bool
	// downgraded lists settings that do not take effect as written, with the reason.
	downgraded []string
}

// effectiveSettings works out the settings that depend on the driver: redirects stay off
// when the driver cannot sign URLs.
func effectiveSettings(ctx context.Context, cfg *config.Config, d driver.Driver) settings {
	var s settings
	r := cfg.Storage.Redirect
	switch {
	case r.Enable && r.Disable:
		s.downgraded = append(s.downgraded, "storage.redirect.enable: off, storage.redirect.disable is true")
	case r.Enable:
		uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := d.URL(uctx, "docker/registry/v2/_health/redirect-probe", r.Expiry)
		cancel()
		if errors.Is(err, driver.ErrUnsupported) {
			s.downgraded = append(s.downgraded, "storage.redirect.enable: off, the "+d.Name()+" driver cannot sign URLs")
		} else {
			s.redirect = true
			if err != nil {
				s.downgraded = append(s.downgraded, "storage.redirect.enable: a test signature failed ("+oneLine(err.Error())+"); blob GETs fall back to streaming while it fails")
			}
		}
	}
	if cfg.Storage.Maintenance.ReadOnly.Enabled && *cfg.Storage.Maintenance.UploadPurging.Enabled {
		s.downgraded = append(s.downgraded, "storage.maintenance.uploadpurging: off in read-only mode")
	}
	if cfg.HTTP.Secret == "" {
		s.downgraded = append(s.downgraded, "http.secret: not set, a random one is used; uploads do not resume across replicas or restarts")
	}
	return s
}

// log writes the start-up lines: one info line with the effective settings, one warning
// listing what is ignored or downgraded, and a debug line for ignored variables.
func (s settings) log(log *slog.Logger, cfg *config.Config, d driver.Driver, listeners []net.Listener) {
	addrs := make([]string, len(listeners))
	for i, l := range listeners {
		addrs[i] = l.Addr().String()
	}
	st := cfg.Storage
	attrs := []any{
		"version", currentBuild().String(),
		"listen", addrs[0],
		"storage", d.Name(),
	}
	if len(addrs) > 1 {
		attrs = append(attrs, "debug_listen", addrs[1])
	}
	switch {
	case st.Filesystem != nil:
		attrs = append(attrs, "rootdirectory", st.Filesystem.RootDirectory)
	case st.S3 != nil:
		attrs = append(attrs, "bucket", st.S3.Bucket, "region", st.S3.Region, "regionendpoint", st.S3.RegionEndpoint, "rootdirectory", st.S3.RootDirectory)
	case st.GCS != nil:
		attrs = append(attrs, "bucket", st.GCS.Bucket, "rootdirectory", st.GCS.RootDirectory)
	case st.Azure != nil:
		attrs = append(attrs, "account", st.Azure.AccountName, "container", st.Azure.Container, "rootdirectory", st.Azure.RootDirectory)
	}
	redirect := "off"
	if s.redirect {
		redirect = "on, expiry " + st.Redirect.Expiry.String()
	}
	purging := "off"
	if up := st.Maintenance.UploadPurging; *up.Enabled && !st.Maintenance.ReadOnly.Enabled {
		purging = "age " + up.Age.String() + ", every " + up.Interval.String()
		if up.DryRun {
			purging += ", dry run"
		}
	}
	attrs = append(attrs,
		"delete", st.Delete.Enabled,
		"readonly", st.Maintenance.ReadOnly.Enabled,
		"redirect", redirect,
		"uploadpurging", purging,
		"retry_maxattempts", st.Retry.MaxAttempts,
		"allowsparse", cfg.Validation.Manifests.AllowSparse,
		"tls", cfg.HTTP.TLS.Certificate != "",
		"auth", authMode(cfg.Auth),
		"draindelay", cfg.HTTP.DrainDelay,
		"draintimeout", cfg.HTTP.DrainTimeout,
		"log_level", cfg.Log.Level,
	)
	log.Info("registryd started", attrs...)
	var ignored []string
	for _, n := range cfg.Ignored {
		if n.Level >= slog.LevelWarn {
			ignored = append(ignored, n.Key+": "+strings.TrimPrefix(n.Reason, "a CNCF Distribution setting registryd does not implement, ignored: "))
		} else {
			log.Debug(n.Reason, "variables", n.Key)
		}
	}
	if len(ignored) > 0 {
		log.Warn("CNCF Distribution settings registryd does not implement are ignored", "keys", ignored)
	}
	if len(s.downgraded) > 0 {
		log.Warn("settings that do not take effect as written", "settings", s.downgraded)
	}
}

// authMode names the authentication in force, for the start-up line.
func authMode(a config.Auth) string {
	switch {
	case a.Htpasswd != nil:
		return "htpasswd"
	case a.Token != nil:
		return "token"
	}
	return "none"
}

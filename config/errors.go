package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Error is one invalid setting. Load and Validate return errors joining one *Error per
// problem (errors.As finds the first; range over the joined errors' Unwrap() []error for
// all of them).
type Error struct {
	// Key is the key path, "storage.s3.chunksize".
	Key string
	// Source says where the value came from when known: "line 12" of the file, or the
	// environment variable that set it.
	Source string
	// Msg says what is wrong and what is allowed.
	Msg string
}

// Error formats "config: <key> (<source>): <msg>".
func (e *Error) Error() string {
	if e.Source != "" {
		return fmt.Sprintf("config: %s (%s): %s", e.Key, e.Source, e.Msg)
	}
	return fmt.Sprintf("config: %s: %s", e.Key, e.Msg)
}

// Notice is a setting Load accepted without acting on it, for the start-up log.
type Notice struct {
	// Level is slog.LevelWarn for a configuration key registryd does not implement and
	// slog.LevelDebug for an environment variable that is no configuration key.
	Level slog.Level
	// Key is the key path, or the variable's name.
	Key string
	// Reason says why it is ignored.
	Reason string
}

// Errors returns the individual *Error values in err (as returned by Load or Validate).
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if e := (*Error)(nil); errors.As(err, &e) {
			out = append(out, e)
		}
	}
	walk(err)
	return out
}

// validator collects Validate's problems.
type validator struct {
	errs    []error
	sources map[string]string
}

func (v *validator) errorf(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{Key: key, Source: v.sources[key], Msg: fmt.Sprintf(format, args...)})
}

// add records an error returned by a section's own validate (nil is nothing).
func (v *validator) add(err error) {
	if err != nil {
		v.errs = append(v.errs, err)
	}
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func (v *validator) oneOf(key, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.errorf(key, "must be one of %s, got %q", strings.Join(allowed, ", "), val)
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.errorf(key, "must be a positive duration (e.g. 30s, 5m), got %s", d)
	}
}

func (v *validator) notNegative(key string, d time.Duration) {
	if d < 0 {
		v.errorf(key, "must not be negative (0 or a duration such as 5s), got %s", d)
	}
}

// sizeRange checks a byte size whose zero value means "driver default".
func (v *validator) sizeRange(key string, n, lo, hi int64, what string) {
	if n != 0 && (n < lo || n > hi) {
		v.errorf(key, "must be between %s and %s (the size of %s; 0 for the default), got %d", sizeString(lo), sizeString(hi), what, n)
	}
}

// listenAddr checks a host:port listen address.
func (v *validator) listenAddr(key, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		hint := ""
		if _, nerr := strconv.Atoi(addr); nerr == nil {
			hint = fmt.Sprintf(" (did you mean %q?)", ":"+addr)
		}
		v.errorf(key, "must be host:port or :port, got %q%s", addr, hint)
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		if _, lerr := net.LookupPort("tcp", port); lerr != nil {
			v.errorf(key, "port must be a number between 0 and 65535, got %q", port)
		}
	}
}

// url checks an absolute http(s) URL (or, when bare is true, also a host[:port] without a
// scheme) and reports whether it is one.
func (v *validator) url(key, raw string, bare bool) bool {
	if bare && !strings.Contains(raw, "://") {
		return true
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(key, "must be an http:// or https:// URL with a host, got %q", raw)
		return false
	}
	return true
}

// validHeaderName reports whether s is an HTTP header field name (an RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// sizeString formats a byte count with a binary unit when it divides evenly.
func sizeString(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

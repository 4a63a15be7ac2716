package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// TLS configures HTTPS on the main listener (http.tls, CNCF Distribution's keys). TLS is on
// when Certificate is set. The files are read at start-up, where a missing file or a key
// that does not match the certificate stops the process; the key pair is re-read while
// serving when the files change (cert-manager renewals, Kubernetes Secret updates).
type TLS struct {
	// Certificate is a PEM file with the server certificate followed by its intermediates.
	Certificate string `yaml:"certificate"`
	// Key is the PEM file of the certificate's private key.
	Key string `yaml:"key"`
	// ClientCAs lists PEM files of certificate authorities. When set, every client must
	// present a certificate signed by one of them (mutual TLS); others are refused during
	// the handshake. REGISTRY_HTTP_TLS_CLIENTCAS takes a comma-separated list.
	ClientCAs []string `yaml:"clientcas"`
	// MinimumTLS is the oldest protocol version accepted: tls1.2 (the default) or tls1.3.
	MinimumTLS string `yaml:"minimumtls"`
	// CipherSuites restricts the TLS 1.2 cipher suites, by their standard names
	// (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); empty: Go's defaults. TLS 1.3 suites are
	// not configurable.
	CipherSuites []string `yaml:"ciphersuites"`
}

// HTTP2 configures HTTP/2 on the TLS listener (Distribution's http.http2).
type HTTP2 struct {
	// Disabled offers only HTTP/1.1 through ALPN.
	Disabled bool `yaml:"disabled"`
}

// CipherSuiteIDs returns the IDs of CipherSuites; call it on a validated configuration.
func (t TLS) CipherSuiteIDs() []uint16 {
	var ids []uint16
	for _, n := range t.CipherSuites {
		for _, cs := range tls.CipherSuites() {
			if cs.Name == n {
				ids = append(ids, cs.ID)
			}
		}
	}
	return ids
}

// Enabled reports whether the main listener serves HTTPS.
func (t TLS) Enabled() bool { return t.Certificate != "" }

// HostURL returns http.host parsed, or nil when it is not set. Call it on a validated
// configuration; an invalid value also gives nil.
func (h HTTP) HostURL() *url.URL {
	if h.Host == "" {
		return nil
	}
	u, err := parseHostURL(h.Host)
	if err != nil {
		return nil
	}
	return u
}

// AbsoluteURLs reports whether Location headers are absolute URLs: when
// http.relativeurls is false, or when it is not set and http.host is.
func (h HTTP) AbsoluteURLs() bool {
	if h.RelativeURLs != nil {
		return !*h.RelativeURLs
	}
	return h.Host != ""
}

// validateTLS checks http.tls, http.host and http.relativeurls, naming the key at fault.
// The files themselves are read by the server at start-up.
func (h HTTP) validateTLS() error {
	t := h.TLS
	switch {
	case t.Certificate != "" && t.Key == "":
		return errors.New("config: http.tls.key: required when http.tls.certificate is set")
	case t.Certificate == "" && t.Key != "":
		return errors.New("config: http.tls.certificate: required when http.tls.key is set")
	case t.Certificate == "" && len(t.ClientCAs) > 0:
		return errors.New("config: http.tls.clientcas: needs http.tls.certificate and http.tls.key")
	case t.Certificate == "" && t.MinimumTLS != "":
		return errors.New("config: http.tls.minimumtls: needs http.tls.certificate and http.tls.key")
	case t.Certificate == "" && len(t.CipherSuites) > 0:
		return errors.New("config: http.tls.ciphersuites: needs http.tls.certificate and http.tls.key")
	}
	for i, n := range t.CipherSuites {
		if !slices.ContainsFunc(tls.CipherSuites(), func(cs *tls.CipherSuite) bool { return cs.Name == n }) {
			why := "not a cipher suite Go offers"
			if slices.ContainsFunc(tls.InsecureCipherSuites(), func(cs *tls.CipherSuite) bool { return cs.Name == n }) {
				why = "insecure"
			}
			return fmt.Errorf("config: http.tls.ciphersuites[%d]: %q is %s; use names such as TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", i, n, why)
		}
	}
	if len(t.CipherSuites) > 0 && !h.HTTP2.Disabled && !slices.ContainsFunc(t.CipherSuites, func(n string) bool {
		return n == "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" || n == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
	}) {
		return errors.New("config: http.tls.ciphersuites: HTTP/2 needs TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 or " +
			"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 in the list (or set http.http2.disabled)")
	}
	switch t.MinimumTLS {
	case "", "tls1.2", "tls1.3":
	case "tls1.0", "tls1.1":
		return fmt.Errorf("config: http.tls.minimumtls: %s is not supported (insecure); use tls1.2 or tls1.3", t.MinimumTLS)
	default:
		return fmt.Errorf("config: http.tls.minimumtls: must be tls1.2 or tls1.3, got %q", t.MinimumTLS)
	}
	for i, f := range t.ClientCAs {
		if strings.TrimSpace(f) == "" {
			return fmt.Errorf("config: http.tls.clientcas[%d]: empty file name", i)
		}
	}
	if h.Host != "" {
		if _, err := parseHostURL(h.Host); err != nil {
			return fmt.Errorf("config: http.host: %w", err)
		}
	}
	return nil
}

// parseHostURL parses http.host: an absolute http or https URL naming a host (and port),
// without path, query, fragment or user information.
func parseHostURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("must be a URL like https://registry.example.com: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("must be a URL like https://registry.example.com (scheme http or https), got %q", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("must name a host, got %q", s)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("must be scheme://host[:port] without user, path, query or fragment, got %q", s)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

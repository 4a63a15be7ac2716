package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/registryd/registryd/config"
)

// certCheckInterval is how often, at most, a handshake re-reads the key pair files.
const certCheckInterval = time.Second

// newTLSConfig returns the main listener's TLS configuration for http.tls and http.http2,
// or nil when TLS is off. It reads every file now and fails with an error naming the key
// at fault (missing file, no certificate in it, key not matching the certificate). The
// key pair is re-read on handshakes when the files change (certReloader); client CAs are
// read once. HTTP/2 is offered unless http.http2.disabled.
func newTLSConfig(h config.HTTP, log *slog.Logger) (*tls.Config, error) {
	c := h.TLS
	if !c.Enabled() {
		return nil, nil
	}
	r, err := newCertReloader(c.Certificate, c.Key, certCheckInterval, log)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
		CipherSuites:   c.CipherSuiteIDs(),
	}
	if h.HTTP2.Disabled {
		tc.NextProtos = []string{"http/1.1"}
	}
	if c.MinimumTLS == "tls1.3" {
		tc.MinVersion = tls.VersionTLS13
	}
	if len(c.ClientCAs) > 0 {
		pool, err := loadClientCAs(c.ClientCAs)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// serveListener serves s on l: HTTPS when s.TLSConfig is set, with HTTP/2 when its
// NextProtos lists "h2" and HTTP/1.1; else plain HTTP.
func serveListener(s *http.Server, l net.Listener) error {
	if s.TLSConfig != nil {
		if !slices.Contains(s.TLSConfig.NextProtos, "h2") {
			p := new(http.Protocols)
			p.SetHTTP1(true)
			s.Protocols = p
		}
		return s.ServeTLS(l, "", "")
	}
	return s.Serve(l)
}

// loadClientCAs reads the PEM files of http.tls.clientcas into one pool; each must hold
// at least one certificate.
func loadClientCAs(files []string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("config: http.tls.clientcas[%d]: %w", i, err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("config: http.tls.clientcas[%d]: no PEM certificate in %s", i, f)
		}
	}
	return pool, nil
}

// certReloader serves the key pair of two files and picks up changes to them: a handshake
// re-reads both files when the last check is older than the interval, and a changed pair
// that parses and matches replaces the served one for new connections. Re-reading (rather
// than watching) follows whatever the paths point to now, so a Kubernetes Secret volume's
// atomic ..data symlink swap and cert-manager's renewals are seen alike. A changed pair
// that does not load (the files are mid-rewrite, the key does not match yet) is logged
// once and the previous pair stays in service until a good one appears.
type certReloader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger

	cert      atomic.Pointer[tls.Certificate]
	nextCheck atomic.Int64 // unix nanoseconds

	mu      sync.Mutex // serialises reloads; guards the fields below
	pemSum  [32]byte   // sha256 of the files of the served pair
	badSum  [32]byte   // sha256 of the last pair that failed to load
	badSeen bool
}

// newCertReloader loads the pair once, failing with an error that names the config key
// at fault.
func newCertReloader(certFile, keyFile string, interval time.Duration, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, interval: interval, log: log}
	cert, sum, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert.Store(cert)
	r.pemSum = sum
	r.nextCheck.Store(time.Now().Add(interval).UnixNano())
	return r, nil
}

// GetCertificate implements tls.Config.GetCertificate. It never fails: a pair was loaded
// at start-up, and reload failures keep the last good pair.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := time.Now()
	next := r.nextCheck.Load()
	// One handshake per interval does the check; the others go on with the current pair.
	if now.UnixNano() >= next && r.nextCheck.CompareAndSwap(next, now.Add(r.interval).UnixNano()) {
		r.reload()
	}
	return r.cert.Load(), nil
}

// reload re-reads the files and swaps in the pair when it changed and loads.
func (r *certReloader) reload() {
	r.mu.Lock()
	defer r.mu.Unlock()
	certPEM, errC := os.ReadFile(r.certFile)
	keyPEM, errK := os.ReadFile(r.keyFile)
	if err := errors.Join(errC, errK); err != nil {
		r.warnOnce(sha256.Sum256([]byte(err.Error())), "TLS key pair not reloaded: keeping the current one", err)
		return
	}
	sum := pairSum(certPEM, keyPEM)
	if sum == r.pemSum {
		return
	}
	cert, err := parseKeyPair(certPEM, keyPEM, r.certFile)
	if err != nil {
		r.warnOnce(sum, "TLS key pair changed but does not load: keeping the current one", err)
		return
	}
	r.cert.Store(cert)
	r.pemSum, r.badSeen = sum, false
	r.log.Info("TLS key pair reloaded", "certificate", r.certFile, "subject", cert.Leaf.Subject.String(),
		"not_after", cert.Leaf.NotAfter)
}

// warnOnce logs a reload failure once per distinct cause (sum).
func (r *certReloader) warnOnce(sum [32]byte, msg string, err error) {
	if r.badSeen && sum == r.badSum {
		return
	}
	r.badSum, r.badSeen = sum, true
	r.log.Warn(msg, "certificate", r.certFile, "key", r.keyFile, "error", err)
}

// loadKeyPair reads and parses the pair, naming the config key at fault.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, [32]byte, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("config: http.tls.certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("config: http.tls.key: %w", err)
	}
	cert, err := parseKeyPair(certPEM, keyPEM, certFile)
	if err != nil {
		return nil, [32]byte{}, err
	}
	return cert, pairSum(certPEM, keyPEM), nil
}

// parseKeyPair parses a PEM certificate chain and its key. A file without a certificate
// is the certificate's fault; anything tls.X509KeyPair refuses after that (no key, a key
// of another certificate) is the key's.
func parseKeyPair(certPEM, keyPEM []byte, certFile string) (*tls.Certificate, error) {
	var leaf *x509.Certificate
	for rest := certPEM; leaf == nil; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("config: http.tls.certificate: no PEM certificate in %s", certFile)
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("config: http.tls.certificate: %s: %w", certFile, err)
		}
		leaf = c
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("config: http.tls.key: does not go with http.tls.certificate (%s): %w", leaf.Subject, err)
	}
	return &cert, nil
}

// pairSum identifies the content of a pair of files.
func pairSum(certPEM, keyPEM []byte) [32]byte {
	return sha256.Sum256(bytes.Join([][]byte{certPEM, keyPEM}, []byte{0}))
}

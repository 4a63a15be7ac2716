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
// key pair and the client CAs are re-read on handshakes when their files change
// (fileReloader), so rotating either needs no restart. HTTP/2 is offered unless
// http.http2.disabled.
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
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		// Each handshake gets the configuration of the current client CA pool: a copy of
		// tc made once per pool, not once per handshake.
		base := tc.Clone()
		keys := make([]string, len(c.ClientCAs))
		for i := range keys {
			keys[i] = fmt.Sprintf("http.tls.clientcas[%d]", i)
		}
		cas, err := newFileReloader(c.ClientCAs, keys, "TLS client CAs", certCheckInterval, log,
			func(contents [][]byte) (*tls.Config, error) {
				pool, err := parseClientCAs(c.ClientCAs, contents)
				if err != nil {
					return nil, err
				}
				conf := base.Clone()
				conf.ClientCAs = pool
				return conf, nil
			}, nil)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = cas.Current().ClientCAs
		tc.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return cas.Current(), nil }
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

// parseClientCAs parses the PEM contents of the files of http.tls.clientcas into one
// pool; each must hold at least one certificate.
func parseClientCAs(files []string, contents [][]byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for i, b := range contents {
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("config: http.tls.clientcas[%d]: no PEM certificate in %s", i, files[i])
		}
	}
	return pool, nil
}

// fileReloader serves a value parsed from a set of files and picks up changes to them: a
// caller of Current re-reads the files when the last check is older than the interval,
// and changed contents that parse replace the served value for new connections.
// Re-reading (rather than watching) follows whatever the paths point to now, so a
// Kubernetes Secret volume's atomic ..data symlink swap and cert-manager's renewals are
// seen alike. Changed contents that do not parse (files mid-rewrite, a key that does not
// match its certificate yet) are logged once and the previous value stays in service
// until good contents appear.
type fileReloader[T any] struct {
	files    []string
	what     string // what the files hold, for logs ("TLS key pair")
	interval time.Duration
	log      *slog.Logger
	parse    func(contents [][]byte) (*T, error)
	loaded   func(*T) []any // log attributes describing a newly loaded value; may be nil

	cur       atomic.Pointer[T]
	nextCheck atomic.Int64 // unix nanoseconds

	mu      sync.Mutex // serialises reloads; guards the fields below
	sum     [32]byte   // sha256 of the contents of the served value
	badSum  [32]byte   // sha256 of the last contents that failed to load
	badSeen bool
}

// newFileReloader reads and parses the files once, failing with an error that names the
// config key at fault: keys[i] is the key that names files[i], and parse names the key
// whose contents it refuses.
func newFileReloader[T any](files, keys []string, what string, interval time.Duration, log *slog.Logger,
	parse func([][]byte) (*T, error), loaded func(*T) []any) (*fileReloader[T], error) {
	r := &fileReloader[T]{files: files, what: what, interval: interval, log: log, parse: parse, loaded: loaded}
	contents, err := readFiles(files)
	if err != nil {
		var pe *readError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("config: %s: %w", keys[pe.i], pe.err)
		}
		return nil, err
	}
	v, err := parse(contents)
	if err != nil {
		return nil, err
	}
	r.cur.Store(v)
	r.sum = contentsSum(contents)
	r.nextCheck.Store(time.Now().Add(interval).UnixNano())
	return r, nil
}

// Current returns the value to serve. It never fails: a value was loaded at start-up,
// and reload failures keep the last good one.
func (r *fileReloader[T]) Current() *T {
	now := time.Now()
	next := r.nextCheck.Load()
	// One caller per interval does the check; the others go on with the current value.
	if now.UnixNano() >= next && r.nextCheck.CompareAndSwap(next, now.Add(r.interval).UnixNano()) {
		r.reload()
	}
	return r.cur.Load()
}

// reload re-reads the files and swaps in the value when they changed and parse.
func (r *fileReloader[T]) reload() {
	r.mu.Lock()
	defer r.mu.Unlock()
	contents, err := readFiles(r.files)
	if err != nil {
		r.warnOnce(sha256.Sum256([]byte(err.Error())), r.what+" not reloaded: keeping the current one", err)
		return
	}
	sum := contentsSum(contents)
	if sum == r.sum {
		return
	}
	v, err := r.parse(contents)
	if err != nil {
		r.warnOnce(sum, r.what+" changed but does not load: keeping the current one", err)
		return
	}
	r.cur.Store(v)
	r.sum, r.badSeen = sum, false
	attrs := []any{"files", r.files}
	if r.loaded != nil {
		attrs = append(attrs, r.loaded(v)...)
	}
	r.log.Info(r.what+" reloaded", attrs...)
}

// warnOnce logs a reload failure once per distinct cause (sum).
func (r *fileReloader[T]) warnOnce(sum [32]byte, msg string, err error) {
	if r.badSeen && sum == r.badSum {
		return
	}
	r.badSum, r.badSeen = sum, true
	r.log.Warn(msg, "files", r.files, "error", err)
}

// readError is readFiles' failure to read files[i].
type readError struct {
	i   int
	err error
}

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// readFiles reads every file; an error is a *readError saying which.
func readFiles(files []string) ([][]byte, error) {
	contents := make([][]byte, len(files))
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, &readError{i, err}
		}
		contents[i] = b
	}
	return contents, nil
}

// contentsSum identifies the contents of a set of files.
func contentsSum(contents [][]byte) [32]byte {
	return sha256.Sum256(bytes.Join(contents, []byte{0}))
}

// certReloader serves the key pair of http.tls.certificate and http.tls.key, re-read as
// fileReloader describes.
type certReloader struct{ *fileReloader[tls.Certificate] }

// newCertReloader loads the pair once, failing with an error that names the config key
// at fault.
func newCertReloader(certFile, keyFile string, interval time.Duration, log *slog.Logger) (*certReloader, error) {
	r, err := newFileReloader([]string{certFile, keyFile}, []string{"http.tls.certificate", "http.tls.key"}, "TLS key pair", interval, log,
		func(c [][]byte) (*tls.Certificate, error) { return parseKeyPair(c[0], c[1], certFile) },
		func(c *tls.Certificate) []any {
			return []any{"subject", c.Leaf.Subject.String(), "not_after", c.Leaf.NotAfter}
		})
	if err != nil {
		return nil, err
	}
	return &certReloader{r}, nil
}

// GetCertificate implements tls.Config.GetCertificate with the current pair.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.Current(), nil
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

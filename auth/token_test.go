package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registryd/registryd/internal/testenv"
)

// certificate returns a certificate for key signed by parent (self-signed when nil).
func certificate(t *testing.T, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey crypto.Signer, ca bool) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "token"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: ca, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writePEM(t *testing.T, certs ...*x509.Certificate) string {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	p := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func genKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t *testing.T, key crypto.Signer, header, claims map[string]any) string {
	t.Helper()
	tok, err := testenv.SignJWT(key, "ES256", header, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTokenKeySelection: a root certificate bundle's keys are found by their libtrust key
// ID or RFC 7638 thumbprint, and x5c chains must lead to one of its certificates.
func TestTokenKeySelection(t *testing.T) {
	rootKey, otherKey, leafKey := genKey(t), genKey(t), genKey(t)
	root := certificate(t, rootKey, nil, nil, true)
	leaf := certificate(t, leafKey, root, rootKey, false)
	stranger := certificate(t, otherKey, nil, nil, true)
	v, err := newTokenVerifier(TokenOptions{Realm: "r", Service: "svc", Issuer: "iss", RootCertBundle: writePEM(t, root)})
	if err != nil {
		t.Fatal(err)
	}
	libtrust, _ := libtrustKeyID(&rootKey.PublicKey)
	tp, _ := thumbprint(&rootKey.PublicKey)
	if len(libtrust) != 59 || strings.Count(libtrust, ":") != 11 {
		t.Fatalf("libtrust key ID %q, want 12 groups of 4", libtrust)
	}
	now := time.Now()
	claims := map[string]any{"iss": "iss", "aud": []string{"other", "svc"}, "sub": "u", "exp": now.Add(time.Minute).Unix(),
		"access": []map[string]any{{"type": "repository", "name": "a/b", "actions": []string{"pull"}}}}
	x5c := func(cs ...*x509.Certificate) []string {
		var out []string
		for _, c := range cs {
			out = append(out, base64.StdEncoding.EncodeToString(c.Raw))
		}
		return out
	}
	for _, c := range []struct {
		name string
		key  crypto.Signer
		hdr  map[string]any
		ok   bool
	}{
		{"libtrust kid", rootKey, map[string]any{"alg": "ES256", "kid": libtrust}, true},
		{"thumbprint kid", rootKey, map[string]any{"alg": "ES256", "kid": tp}, true},
		{"no kid", rootKey, map[string]any{"alg": "ES256"}, true},
		{"no kid, unknown key", otherKey, map[string]any{"alg": "ES256"}, false},
		{"known kid, other key", otherKey, map[string]any{"alg": "ES256", "kid": libtrust}, false},
		{"x5c chain to the root", leafKey, map[string]any{"alg": "ES256", "x5c": x5c(leaf, root)}, true},
		{"x5c leaf alone", leafKey, map[string]any{"alg": "ES256", "x5c": x5c(leaf)}, true},
		{"x5c to a stranger", otherKey, map[string]any{"alg": "ES256", "x5c": x5c(stranger)}, false},
		{"x5c leaf, other signer", otherKey, map[string]any{"alg": "ES256", "x5c": x5c(leaf, root)}, false},
		{"crit header", rootKey, map[string]any{"alg": "ES256", "kid": libtrust, "crit": []string{"exp"}}, false},
	} {
		id, err := v.verify(sign(t, c.key, c.hdr, claims), now)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.name, err, c.ok)
			continue
		}
		if c.ok && (id.Name != "u" || !id.granted("repository", "a/b", "pull") || id.granted("repository", "a/b", "push")) {
			t.Errorf("%s: identity %+v", c.name, id)
		}
	}
}

// TestTokenTimes: exp and nbf are checked with the leeway; exp is required.
func TestTokenTimes(t *testing.T) {
	key := genKey(t)
	v, err := newTokenVerifier(TokenOptions{Realm: "r", Service: "svc", Issuer: "iss", RootCertBundle: writePEM(t, certificate(t, key, nil, nil, true)),
		Leeway: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, c := range []struct {
		name   string
		claims map[string]any
		ok     bool
	}{
		{"expired within the leeway", map[string]any{"exp": now.Add(-20 * time.Second).Unix()}, true},
		{"expired", map[string]any{"exp": now.Add(-40 * time.Second).Unix()}, false},
		{"no exp", map[string]any{}, false},
		{"nbf within the leeway", map[string]any{"exp": now.Add(time.Hour).Unix(), "nbf": now.Add(20 * time.Second).Unix()}, true},
		{"not yet valid", map[string]any{"exp": now.Add(time.Hour).Unix(), "nbf": now.Add(40 * time.Second).Unix()}, false},
		{"nbf beyond any clock", map[string]any{"exp": now.Add(time.Hour).Unix(), "nbf": 1e15}, false},
		{"exp as a string", map[string]any{"exp": "tomorrow"}, false},
	} {
		c.claims["iss"], c.claims["aud"] = "iss", "svc"
		_, err := v.verify(sign(t, key, map[string]any{"alg": "ES256"}, c.claims), now)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.name, err, c.ok)
		}
	}
}

// TestTokenKeyFiles: unusable key files stop start-up with a message naming them.
func TestTokenKeyFiles(t *testing.T) {
	dir := t.TempDir()
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	files := map[string]any{
		"nokid.json": map[string]any{"keys": []map[string]string{{"kty": "OKP", "crv": "Ed25519", "x": enc(make([]byte, 32))}}},
		"weak.json":  map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "w", "n": enc(weak.N.Bytes()), "e": "AQAB"}}},
		"p384.json":  map[string]any{"keys": []map[string]string{{"kty": "EC", "kid": "p", "crv": "P-384", "x": "AA", "y": "AA"}}},
		"hmac.json":  map[string]any{"keys": []map[string]string{{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}}},
		"empty.json": map[string]any{"keys": []any{}},
	}
	for name, content := range files {
		b, _ := json.Marshal(content)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := New(Options{Token: &TokenOptions{Realm: "r", Service: "s", Issuer: "i", JWKS: p}})
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
	notPEM := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Token: &TokenOptions{Realm: "r", Service: "s", Issuer: "i", RootCertBundle: notPEM}}); err == nil ||
		!strings.Contains(err.Error(), notPEM) {
		t.Errorf("bundle without certificates: %v", err)
	}
}

// TestTokenSigningAlgorithms: auth.token.signingalgorithms restricts the algorithms
// accepted; an ES256 token passes only when ES256 is listed (or nothing is).
func TestTokenSigningAlgorithms(t *testing.T) {
	key := genKey(t)
	bundle := writePEM(t, certificate(t, key, nil, nil, true))
	now := time.Now()
	claims := map[string]any{"iss": "iss", "aud": "svc", "sub": "u", "exp": now.Add(time.Minute).Unix()}
	tok := sign(t, key, map[string]any{"alg": "ES256"}, claims)
	for _, c := range []struct {
		algs []string
		ok   bool
	}{
		{nil, true},
		{[]string{"ES256"}, true},
		{[]string{"EdDSA", "HS256", "ES256"}, true},
		{[]string{"RS256", "EdDSA"}, false},
	} {
		v, err := newTokenVerifier(TokenOptions{Realm: "r", Service: "svc", Issuer: "iss", RootCertBundle: bundle, Algorithms: c.algs})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.verify(tok, now); (err == nil) != c.ok {
			t.Errorf("algorithms %v: %v, want ok %v", c.algs, err, c.ok)
		}
	}
}

// TestTokenSize: a token granting hundreds of repositories (well over 8 KiB) verifies; one
// over the limit is refused before it is decoded.
func TestTokenSize(t *testing.T) {
	key := genKey(t)
	v, err := newTokenVerifier(TokenOptions{Realm: "r", Service: "svc", Issuer: "iss", RootCertBundle: writePEM(t, certificate(t, key, nil, nil, true))})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	token := func(repos int) string {
		var access []map[string]any
		for i := range repos {
			access = append(access, map[string]any{"type": "repository", "name": fmt.Sprintf("group/project-%04d/image", i), "actions": []string{"pull", "push"}})
		}
		return sign(t, key, map[string]any{"alg": "ES256"}, map[string]any{"iss": "iss", "aud": "svc", "sub": "ci", "exp": now.Add(time.Minute).Unix(), "access": access})
	}
	big := token(300)
	if len(big) < 16<<10 {
		t.Fatalf("token of %d bytes, want over 16 KiB", len(big))
	}
	id, err := v.verify(big, now)
	if err != nil {
		t.Fatalf("a %d-byte token: %v", len(big), err)
	}
	if !id.granted("repository", "group/project-0299/image", "push") {
		t.Error("the last grant of a big token is lost")
	}
	if _, err := v.verify(token(1500), now); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a token over %d bytes: %v, want refused for its size", maxTokenBytes, err)
	}
}

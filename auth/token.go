package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"slices"
	"strings"
	"time"
)

// TokenOptions configures bearer token authentication (the Docker token specification:
// a JWT signed by a token server the registry trusts).
type TokenOptions struct {
	// Realm is the token server's URL, sent in challenges.
	Realm string
	// Service is this registry's name: a token's aud must name it.
	Service string
	// Issuer must equal a token's iss.
	Issuer string
	// RootCertBundle is a PEM file of certificates. Their keys verify tokens whose kid is
	// the key's ID (libtrust form, as Distribution's token servers write it, or RFC 7638
	// thumbprint), and they are the roots of tokens that carry an x5c chain.
	RootCertBundle string
	// JWKS is a JSON Web Key Set file; its keys are selected by kid.
	JWKS string
	// Leeway is the clock skew allowed on exp and nbf (default 60s).
	Leeway time.Duration
	// Algorithms, when not empty, restricts the signature algorithms accepted to those
	// listed (auth.token.signingalgorithms); only RS256, ES256 and EdDSA are ever accepted.
	Algorithms []string
}

// Limits on what a token may be, checked before anything is decoded. 64 KiB holds the
// access claims of token servers that grant hundreds of repositories in one token (CI
// jobs of a whole group); the HTTP server's header limit (1 MiB) bounds the rest.
const (
	maxTokenBytes = 64 << 10
	minRSABits    = 2048
)

// errToken is wrapped by every token verification error. Messages say what is wrong
// with a token, never what the token is.
var errToken = errors.New("invalid token")

func tokenErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errToken, fmt.Sprintf(format, args...))
}

// tokenVerifier checks tokens against trusted keys and the expected claims.
type tokenVerifier struct {
	realm, service, issuer string
	leeway                 time.Duration
	keys                   map[string]crypto.PublicKey // by kid
	all                    []crypto.PublicKey          // every key, for tokens without kid
	roots                  *x509.CertPool              // x5c roots; nil without a bundle
	algorithms             []string                    // accepted algorithms; nil: all supported
}

func newTokenVerifier(o TokenOptions) (*tokenVerifier, error) {
	v := &tokenVerifier{realm: o.Realm, service: o.Service, issuer: o.Issuer, leeway: o.Leeway,
		keys: map[string]crypto.PublicKey{}, algorithms: o.Algorithms}
	if v.leeway == 0 {
		v.leeway = 60 * time.Second
	}
	if o.Realm == "" || o.Service == "" || o.Issuer == "" {
		return nil, errors.New("auth.token: realm, service and issuer are required")
	}
	if o.RootCertBundle == "" && o.JWKS == "" {
		return nil, errors.New("auth.token: rootcertbundle or jwks is required")
	}
	if o.RootCertBundle != "" {
		if err := v.loadBundle(o.RootCertBundle); err != nil {
			return nil, err
		}
	}
	if o.JWKS != "" {
		if err := v.loadJWKS(o.JWKS); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func (v *tokenVerifier) add(kid string, key crypto.PublicKey) {
	if _, dup := v.keys[kid]; !dup {
		v.all = append(v.all, key)
	}
	v.keys[kid] = key
}

// loadBundle reads the PEM certificates of path.
func (v *tokenVerifier) loadBundle(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("auth.token.rootcertbundle: %w", err)
	}
	v.roots = x509.NewCertPool()
	n := 0
	for i := 1; ; i++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return fmt.Errorf("auth.token.rootcertbundle %s: certificate %d: %w", path, i, err)
		}
		if err := checkKey(cert.PublicKey); err != nil {
			return fmt.Errorf("auth.token.rootcertbundle %s: certificate %d: %w", path, i, err)
		}
		v.roots.AddCert(cert)
		tp, err := thumbprint(cert.PublicKey)
		if err != nil {
			return fmt.Errorf("auth.token.rootcertbundle %s: certificate %d: %w", path, i, err)
		}
		lt, err := libtrustKeyID(cert.PublicKey)
		if err != nil {
			return fmt.Errorf("auth.token.rootcertbundle %s: certificate %d: %w", path, i, err)
		}
		v.add(lt, cert.PublicKey)
		v.keys[tp] = cert.PublicKey
		n++
	}
	if n == 0 {
		return fmt.Errorf("auth.token.rootcertbundle %s: no PEM certificates", path)
	}
	return nil
}

// jwk is a JSON Web Key (RFC 7517) of the types tokens may be signed with.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// loadJWKS reads the keys of the JWKS file at path; each needs a kid.
func (v *tokenVerifier) loadJWKS(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("auth.token.jwks: %w", err)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("auth.token.jwks %s: %w", path, err)
	}
	n := 0
	for i, k := range set.Keys {
		if k.Use == "enc" {
			continue
		}
		if k.Kid == "" {
			return fmt.Errorf("auth.token.jwks %s: key %d: no kid", path, i)
		}
		key, err := k.publicKey()
		if err == nil {
			err = checkKey(key)
		}
		if err != nil {
			return fmt.Errorf("auth.token.jwks %s: key %d (kid %q): %w", path, i, k.Kid, err)
		}
		v.add(k.Kid, key)
		n++
	}
	if n == 0 {
		return fmt.Errorf("auth.token.jwks %s: no signing keys", path)
	}
	return nil
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func (k jwk) publicKey() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err := errors.Join(err1, err2); err != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("malformed RSA key")
		}
		exp := new(big.Int).SetBytes(e)
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}, nil
	case "EC":
		if k.Crv != "P-256" {
			return nil, fmt.Errorf("unsupported EC curve %q (only P-256, for ES256)", k.Crv)
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if err := errors.Join(err1, err2); err != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("malformed EC key")
		}
		raw := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			return nil, fmt.Errorf("malformed EC key: %w", err)
		}
		return pub, nil
	case "OKP":
		x, err := b64(k.X)
		if k.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("malformed or unsupported OKP key (only Ed25519)")
		}
		return ed25519.PublicKey(x), nil
	default:
		return nil, fmt.Errorf("unsupported key type %q (RSA, EC P-256 and OKP Ed25519 are)", k.Kty)
	}
}

// checkKey accepts RSA keys of at least 2048 bits, P-256 ECDSA keys and Ed25519 keys.
func checkKey(key crypto.PublicKey) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits, want at least %d", k.N.BitLen(), minRSABits)
		}
		if k.E < 3 || k.E%2 == 0 {
			return errors.New("RSA key with an invalid exponent")
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA key on %s, want P-256", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key type %T", key)
	}
	return nil
}

// libtrustKeyID is the key ID Distribution's token servers put in kid: the SHA-256 of the
// key's DER SubjectPublicKeyInfo, truncated to 240 bits, base32, in groups of four.
func libtrustKeyID(key crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	s := base32.StdEncoding.EncodeToString(sum[:30])
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(s[i : i+4])
	}
	return b.String(), nil
}

// thumbprint is the RFC 7638 JWK thumbprint of key, base64url.
func thumbprint(key crypto.PublicKey) (string, error) {
	enc := base64.RawURLEncoding.EncodeToString
	var canon string
	switch k := key.(type) {
	case *rsa.PublicKey:
		canon = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, enc(big.NewInt(int64(k.E)).Bytes()), enc(k.N.Bytes()))
	case *ecdsa.PublicKey:
		raw, err := k.Bytes()
		if err != nil {
			return "", err
		}
		canon = fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, enc(raw[1:33]), enc(raw[33:]))
	case ed25519.PublicKey:
		canon = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, enc(k))
	default:
		return "", fmt.Errorf("unsupported key type %T", key)
	}
	sum := sha256.Sum256([]byte(canon))
	return enc(sum[:]), nil
}

// jwtHeader is a token's JOSE header.
type jwtHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	X5c  []string        `json:"x5c"`
	Crit json.RawMessage `json:"crit"`
}

// jwtClaims are the claims of a Docker registry token.
type jwtClaims struct {
	Iss    string          `json:"iss"`
	Sub    string          `json:"sub"`
	Aud    json.RawMessage `json:"aud"`
	Exp    *float64        `json:"exp"`
	Nbf    *float64        `json:"nbf"`
	Access []struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	} `json:"access"`
}

// verify checks token at time now and returns the identity it proves, with its grants.
// Only RS256, ES256 and EdDSA signatures by a trusted key are accepted; aud must name the
// service, iss the issuer, exp is required and, with nbf, checked with the leeway.
func (v *tokenVerifier) verify(token string, now time.Time) (Identity, error) {
	if len(token) > maxTokenBytes {
		return Identity{}, tokenErr("larger than %d bytes", maxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Identity{}, tokenErr("not a JWS compact serialization")
	}
	hb, err1 := b64(parts[0])
	cb, err2 := b64(parts[1])
	sig, err3 := b64(parts[2])
	if errors.Join(err1, err2, err3) != nil {
		return Identity{}, tokenErr("malformed base64url")
	}
	var h jwtHeader
	if err := json.Unmarshal(hb, &h); err != nil {
		return Identity{}, tokenErr("malformed header")
	}
	if h.Crit != nil {
		return Identity{}, tokenErr("critical header extensions are not supported")
	}
	switch h.Alg {
	case "RS256", "ES256", "EdDSA":
	default:
		return Identity{}, tokenErr("algorithm %q is not accepted (RS256, ES256, EdDSA)", truncate(h.Alg))
	}
	if len(v.algorithms) > 0 && !slices.Contains(v.algorithms, h.Alg) {
		return Identity{}, tokenErr("algorithm %q is not in auth.token.signingalgorithms", h.Alg)
	}
	keys, err := v.candidates(h, now)
	if err != nil {
		return Identity{}, err
	}
	signed := []byte(parts[0] + "." + parts[1])
	ok := false
	for _, k := range keys {
		if verifySignature(h.Alg, k, signed, sig) {
			ok = true
			break
		}
	}
	if !ok {
		return Identity{}, tokenErr("signature does not verify with a trusted %s key", h.Alg)
	}
	var c jwtClaims
	if err := json.Unmarshal(cb, &c); err != nil {
		return Identity{}, tokenErr("malformed claims")
	}
	if c.Iss != v.issuer {
		return Identity{}, tokenErr("issuer %q is not %q", truncate(c.Iss), v.issuer)
	}
	if !audienceHas(c.Aud, v.service) {
		return Identity{}, tokenErr("audience does not name service %q", v.service)
	}
	if c.Exp == nil {
		return Identity{}, tokenErr("no exp claim")
	}
	exp, ok := unixTime(*c.Exp)
	if !ok {
		return Identity{}, tokenErr("exp out of range")
	}
	if now.After(exp.Add(v.leeway)) {
		return Identity{}, tokenErr("expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if c.Nbf != nil {
		nbf, ok := unixTime(*c.Nbf)
		if !ok {
			return Identity{}, tokenErr("nbf out of range")
		}
		if now.Add(v.leeway).Before(nbf) {
			return Identity{}, tokenErr("not valid before %s", nbf.UTC().Format(time.RFC3339))
		}
	}
	id := Identity{Name: c.Sub, Authenticated: true, grants: map[string]map[string]bool{}}
	for _, a := range c.Access {
		res := a.Type + ":" + a.Name
		if id.grants[res] == nil {
			id.grants[res] = map[string]bool{}
		}
		for _, act := range a.Actions {
			id.grants[res][act] = true
		}
	}
	return id, nil
}

// candidates returns the keys that may have signed a token with header h: the leaf of its
// x5c chain (verified against the root bundle), the key its kid names, or every key.
func (v *tokenVerifier) candidates(h jwtHeader, now time.Time) ([]crypto.PublicKey, error) {
	switch {
	case len(h.X5c) > 0:
		if v.roots == nil {
			return nil, tokenErr("x5c chain without a root certificate bundle")
		}
		var certs []*x509.Certificate
		for _, s := range h.X5c {
			der, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, tokenErr("malformed x5c certificate")
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, tokenErr("malformed x5c certificate")
			}
			certs = append(certs, c)
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, tokenErr("x5c chain does not lead to a trusted root")
		}
		if err := checkKey(certs[0].PublicKey); err != nil {
			return nil, tokenErr("x5c leaf: %v", err)
		}
		return []crypto.PublicKey{certs[0].PublicKey}, nil
	case h.Kid != "":
		k, ok := v.keys[h.Kid]
		if !ok {
			return nil, tokenErr("unknown kid %q", truncate(h.Kid))
		}
		return []crypto.PublicKey{k}, nil
	default:
		return v.all, nil
	}
}

// verifySignature checks sig over signed with key under alg; the key's type must be
// the one alg names.
func verifySignature(alg string, key crypto.PublicKey, signed, sig []byte) bool {
	sum := sha256.Sum256(signed)
	switch alg {
	case "RS256":
		k, ok := key.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil
	case "ES256":
		k, ok := key.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P256() || len(sig) != 64 {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(k, sum[:], r, s)
	case "EdDSA":
		k, ok := key.(ed25519.PublicKey)
		return ok && ed25519.Verify(k, signed, sig)
	}
	return false
}

// audienceHas reports whether aud (a string or an array of strings) names service.
func audienceHas(aud json.RawMessage, service string) bool {
	var one string
	if json.Unmarshal(aud, &one) == nil {
		return one == service
	}
	var many []string
	if json.Unmarshal(aud, &many) == nil {
		for _, a := range many {
			if a == service {
				return true
			}
		}
	}
	return false
}

// unixTime converts a NumericDate; ok is false for values no clock will reach.
func unixTime(f float64) (time.Time, bool) {
	if math.IsNaN(f) || f > 1e11 || f < 0 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// truncate bounds attacker-supplied strings quoted in errors and logs.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

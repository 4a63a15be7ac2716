package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TokenServer is a Docker token server for tests (the token specification's
// authorization service): clients present HTTP Basic credentials (or none) at its realm
// with the scopes they want, and get a JWT granting what Grant allows, signed with keys
// generated at start. Its keys are published as a JWKS file for registryd's
// auth.token.jwks.
type TokenServer struct {
	// URL is the realm: "http://localhost:<port>/token".
	URL string
	// Service and Issuer are put in aud and iss.
	Service, Issuer string
	// JWKSPath is a JSON Web Key Set file of the keys that sign (kid "es", "ed", "rs").
	JWKSPath string

	users map[string]string
	grant func(user, typ, name string, actions []string) []string
	keys  map[string]crypto.Signer // by kid

	mu     sync.Mutex
	issued []string // the scopes of each token issued, in order
}

// Token signing keys of a TokenServer, by kid; each signs with its own algorithm.
const (
	KidES256 = "es"
	KidEdDSA = "ed"
	KidRS256 = "rs"
)

// StartTokenServer starts a token server on a free loopback port. users maps user names
// to passwords; grant returns the actions user ("" when anonymous) gets of those asked
// on resource typ:name.
func StartTokenServer(t testing.TB, service, issuer string, users map[string]string,
	grant func(user, typ, name string, actions []string) []string) *TokenServer {
	t.Helper()
	s := &TokenServer{Service: service, Issuer: issuer, users: users, grant: grant, keys: map[string]crypto.Signer{}}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.keys[KidES256], s.keys[KidEdDSA], s.keys[KidRS256] = ec, ed, rs
	enc := base64.RawURLEncoding.EncodeToString
	ecRaw, err := ec.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	jwks := map[string]any{"keys": []map[string]string{
		{"kty": "EC", "kid": KidES256, "crv": "P-256", "x": enc(ecRaw[1:33]), "y": enc(ecRaw[33:]), "use": "sig"},
		{"kty": "OKP", "kid": KidEdDSA, "crv": "Ed25519", "x": enc(ed.Public().(ed25519.PublicKey))},
		{"kty": "RSA", "kid": KidRS256, "n": enc(rs.N.Bytes()), "e": enc(big.NewInt(int64(rs.E)).Bytes())},
	}}
	b, _ := json.Marshal(jwks)
	s.JWKSPath = filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(s.JWKSPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(s.serveToken))
	t.Cleanup(srv.Close)
	// By name, not by IP literal: go-containerregistry (crane) refuses realms at loopback
	// or private IP literals other than the registry's own host:port.
	s.URL = strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/token"
	return s
}

// serveToken answers GET (Basic credentials, scope parameters) and POST (OAuth2 password
// grant form) token requests.
func (s *TokenServer) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	user, pass, hasBasic := r.BasicAuth()
	if r.Method == http.MethodPost && r.PostForm.Get("grant_type") == "password" {
		user, pass, hasBasic = r.PostForm.Get("username"), r.PostForm.Get("password"), true
	}
	if hasBasic {
		if want, ok := s.users[user]; !ok || want != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
			http.Error(w, `{"details":"invalid credentials"}`, http.StatusUnauthorized)
			return
		}
	} else {
		user = ""
	}
	if svc := r.Form.Get("service"); svc != s.Service {
		http.Error(w, "unknown service", http.StatusBadRequest)
		return
	}
	var access []map[string]any
	var scopes []string
	for _, sc := range r.Form["scope"] {
		for _, one := range strings.Fields(sc) {
			parts := strings.Split(one, ":")
			if len(parts) < 3 {
				continue
			}
			typ, name, acts := parts[0], strings.Join(parts[1:len(parts)-1], ":"), strings.Split(parts[len(parts)-1], ",")
			got := s.grant(user, typ, name, acts)
			if len(got) > 0 {
				access = append(access, map[string]any{"type": typ, "name": name, "actions": got})
			}
			scopes = append(scopes, one)
		}
	}
	s.mu.Lock()
	s.issued = append(s.issued, strings.Join(scopes, " "))
	s.mu.Unlock()
	now := time.Now()
	claims := map[string]any{"iss": s.Issuer, "sub": user, "aud": s.Service, "exp": now.Add(5 * time.Minute).Unix(),
		"nbf": now.Add(-time.Second).Unix(), "iat": now.Unix(), "jti": enc64(randomBytes(8))}
	if access != nil {
		claims["access"] = access
	}
	tok, err := s.sign(KidES256, nil, claims)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 300,
		"issued_at": now.UTC().Format(time.RFC3339)})
}

// Issued returns the scopes asked for by each token request so far.
func (s *TokenServer) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// Sign returns a JWT of claims signed with the key kid (KidES256, KidEdDSA, KidRS256)
// under its algorithm. header entries are added to (or replace) alg, typ and kid.
func (s *TokenServer) Sign(t testing.TB, kid string, header, claims map[string]any) string {
	t.Helper()
	tok, err := s.sign(kid, header, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (s *TokenServer) sign(kid string, header, claims map[string]any) (string, error) {
	k := s.keys[kid]
	alg := map[string]string{KidES256: "ES256", KidEdDSA: "EdDSA", KidRS256: "RS256"}[kid]
	h := map[string]any{"alg": alg, "typ": "JWT", "kid": kid}
	for name, v := range header {
		h[name] = v
	}
	return SignJWT(k, alg, h, claims)
}

// SignJWT signs header and claims with key as alg (ES256, EdDSA or RS256) and returns the
// compact serialization.
func SignJWT(key crypto.Signer, alg string, header, claims map[string]any) (string, error) {
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	signed := enc64(hb) + "." + enc64(cb)
	sum := sha256.Sum256([]byte(signed))
	var sig []byte
	switch alg {
	case "ES256":
		r, s, err := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), sum[:])
		if err != nil {
			return "", err
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case "EdDSA":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), []byte(signed))
	case "RS256":
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:]); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("SignJWT: unsupported algorithm %q", alg)
	}
	return signed + "." + enc64(sig), nil
}

func enc64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

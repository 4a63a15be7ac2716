package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// selftestBlobSize is the size of the blob the self-test pushes, in two chunks.
const selftestBlobSize = 256 << 10

// runSelftest is `registryd selftest [-insecure] [-repo NAME] URL`: it pushes a random blob in
// two chunks (so that, behind a Service, the chunks may land on different replicas) to the
// registry at URL, then pulls it back and compares. Credentials for htpasswd (Basic) or token
// (Bearer) auth come from REGISTRYD_SELFTEST_USERNAME and REGISTRYD_SELFTEST_PASSWORD. It is
// what the Helm chart's `helm test` pod runs.
func runSelftest(ctx context.Context, args []string, stdout io.Writer, environ func(string) string) error {
	fs := flag.NewFlagSet("selftest", flag.ContinueOnError)
	insecure := fs.Bool("insecure", false, "do not verify the registry's TLS certificate")
	repo := fs.String("repo", "registryd-selftest/blob", "repository to push to")
	timeout := fs.Duration("timeout", 2*time.Minute, "overall time limit")
	certFile := fs.String("cert", "", "PEM client certificate to present (mutual TLS; with -key)")
	keyFile := fs.String("key", "", "PEM key of the -cert certificate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: registryd selftest [-insecure] [-cert FILE -key FILE] [-repo NAME] URL")
	}
	if (*certFile == "") != (*keyFile == "") {
		return errors.New("selftest: -cert and -key go together")
	}
	base, err := url.Parse(strings.TrimSuffix(fs.Arg(0), "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("selftest: %q is not an http(s) URL", fs.Arg(0))
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: *insecure} //nolint:gosec // asked for with -insecure
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("selftest: client certificate: %w", err)
		}
		tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	}
	c := &selftestClient{
		http: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return nil }},
		base: base, repo: *repo,
		user: environ("REGISTRYD_SELFTEST_USERNAME"), pass: environ("REGISTRYD_SELFTEST_PASSWORD"),
	}
	if err := c.login(ctx); err != nil {
		return err
	}
	blob := make([]byte, selftestBlobSize)
	_, _ = rand.Read(blob)
	sum := sha256.Sum256(blob)
	dgst := "sha256:" + hex.EncodeToString(sum[:])
	start := time.Now()
	if err := c.push(ctx, blob, dgst); err != nil {
		return err
	}
	got, err := c.pull(ctx, dgst)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, blob) {
		return fmt.Errorf("selftest: pulled %d bytes that differ from the %d pushed for %s", len(got), len(blob), dgst)
	}
	fmt.Fprintf(stdout, "registryd selftest: pushed and pulled %s (%d bytes) in %s at %s/%s\n",
		dgst, len(blob), time.Since(start).Round(time.Millisecond), base, c.repo)
	return nil
}

// selftestClient is the minimal OCI Distribution client the self-test needs.
type selftestClient struct {
	http       *http.Client
	base       *url.URL
	repo       string
	user, pass string
	authz      string // the Authorization header value once logged in
}

// login probes /v2/ and, on a 401, gets credentials for the challenge's scheme.
func (c *selftestClient) login(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodGet, c.base.String()+"/v2/", nil, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode != http.StatusUnauthorized:
		return fmt.Errorf("selftest: GET /v2/: %s", resp.Status)
	case c.user == "":
		return errors.New("selftest: the registry wants credentials: set REGISTRYD_SELFTEST_USERNAME and REGISTRYD_SELFTEST_PASSWORD")
	}
	challenge := resp.Header.Get("WWW-Authenticate")
	scheme, params, _ := strings.Cut(challenge, " ")
	switch strings.ToLower(scheme) {
	case "basic":
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.SetBasicAuth(c.user, c.pass)
		c.authz = req.Header.Get("Authorization")
		return nil
	case "bearer":
		return c.token(ctx, parseChallenge(params))
	default:
		return fmt.Errorf("selftest: unsupported challenge %q", challenge)
	}
}

// token fetches a bearer token from the challenge's realm for push and pull on the repository.
func (c *selftestClient) token(ctx context.Context, p map[string]string) error {
	realm, err := url.Parse(p["realm"])
	if err != nil || realm.Host == "" {
		return fmt.Errorf("selftest: bad token realm %q", p["realm"])
	}
	q := realm.Query()
	if p["service"] != "" {
		q.Set("service", p["service"])
	}
	q.Set("scope", "repository:"+c.repo+":pull,push")
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return fmt.Errorf("selftest: %w", err)
	}
	req.SetBasicAuth(c.user, c.pass)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("selftest: token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("selftest: token from %s: %s", realm.Host, resp.Status)
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return fmt.Errorf("selftest: token: %w", err)
	}
	tok := body.Token
	if tok == "" {
		tok = body.AccessToken
	}
	if tok == "" {
		return errors.New("selftest: the token endpoint returned no token")
	}
	c.authz = "Bearer " + tok
	return nil
}

// parseChallenge reads the key="value" pairs of a WWW-Authenticate challenge.
func parseChallenge(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		s = strings.TrimLeft(s, ", ")
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.Index(rest[1:], `"`)
			if end < 0 {
				break
			}
			v, s = rest[1:1+end], rest[2+end:]
		} else {
			v, s, _ = strings.Cut(rest, ",")
		}
		out[strings.ToLower(strings.TrimSpace(k))] = v
	}
	return out
}

func (c *selftestClient) do(ctx context.Context, method, u string, body []byte, hdr map[string]string) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, fmt.Errorf("selftest: %w", err)
	}
	if c.authz != "" {
		req.Header.Set("Authorization", c.authz)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("selftest: %s %s: %w", method, req.URL.Path, err)
	}
	return resp, nil
}

// resolve makes a Location header absolute against the registry's URL.
func (c *selftestClient) resolve(loc string) (string, error) {
	u, err := c.base.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("selftest: bad Location %q: %w", loc, err)
	}
	return u.String(), nil
}

// push uploads blob in two PATCH chunks and completes the upload with its digest.
func (c *selftestClient) push(ctx context.Context, blob []byte, dgst string) error {
	resp, err := c.do(ctx, http.MethodPost, c.base.String()+"/v2/"+c.repo+"/blobs/uploads/", nil, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("selftest: start upload: %s", resp.Status)
	}
	half := len(blob) / 2
	for i, chunk := range [][]byte{blob[:half], blob[half:]} {
		loc, err := c.resolve(resp.Header.Get("Location"))
		if err != nil {
			return err
		}
		from := i * half
		resp, err = c.do(ctx, http.MethodPatch, loc, chunk, map[string]string{
			"Content-Type":  "application/octet-stream",
			"Content-Range": fmt.Sprintf("%d-%d", from, from+len(chunk)-1),
		})
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("selftest: upload chunk %d: %s", i+1, resp.Status)
		}
	}
	loc, err := c.resolve(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	u, _ := url.Parse(loc)
	q := u.Query()
	q.Set("digest", dgst)
	u.RawQuery = q.Encode()
	resp, err = c.do(ctx, http.MethodPut, u.String(), nil, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("selftest: complete upload: %s", resp.Status)
	}
	return nil
}

// pull downloads the blob, following a redirect to the object store if there is one.
func (c *selftestClient) pull(ctx context.Context, dgst string) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, c.base.String()+"/v2/"+c.repo+"/blobs/"+dgst, nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("selftest: pull %s: %s", dgst, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, selftestBlobSize+1))
	if err != nil {
		return nil, fmt.Errorf("selftest: pull %s: %w", dgst, err)
	}
	return b, nil
}

// runSleep is `registryd sleep DURATION`, the chart's preStop pause: the image has no shell
// and no sleep(1), and an exec hook works on every Kubernetes version.
func runSleep(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: registryd sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	if err != nil || d < 0 {
		return fmt.Errorf("sleep: %q is not a duration", args[0])
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	return nil
}

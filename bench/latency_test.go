package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/internal/testenv"
)

// backendDelay is the time the delaying proxy holds each request on its way to MinIO: a
// stand-in for the first-byte latency of a cloud object store in the same region.
const backendDelay = 10 * time.Millisecond

// delayProxy forwards TCP connections to addr, holding every chunk the client sends for
// delay before passing it on (responses flow back at once), so each request to the
// backend costs one extra delay. It stops with the test.
func delayProxy(t *testing.T, addr string, delay time.Duration) string {
	t.Helper()
	return countingDelayProxy(t, addr, delay, nil)
}

// countingDelayProxy is delayProxy that also adds to chunks, when not nil, the number of
// chunks clients sent: for requests without a body (GET, HEAD, and List calls), the
// number of backend requests.
func countingDelayProxy(t *testing.T, addr string, delay time.Duration, chunks *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer s.Close()
				go func() {
					_, _ = io.Copy(c, s)
					c.Close()
				}()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if chunks != nil {
							chunks.Add(1)
						}
						time.Sleep(delay)
						if _, werr := s.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// latencyOp is one kind of request timed by TestBenchLatency: run performs the k-th one
// on the registry at base (pushes send new content each time); direct names the S3 call
// it is compared with.
type latencyOp struct {
	name   string
	direct string // "GET", "HEAD" or "PUT"
	run    func(ctx context.Context, base string, k uint64) error
}

// benchImage is a small image pushed to a registry: a config, one 64 KiB layer and a
// manifest tagged v1.
type benchImage struct {
	repo                                 string
	config, layer, manifest              []byte
	configDigest, layerDigest, manDigest digest.Digest
}

func newBenchImage(repo string) *benchImage {
	img := &benchImage{repo: repo, config: []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)}
	img.layer = make([]byte, 64<<10)
	_, _ = io.ReadFull(newStream(42, int64(len(img.layer))), img.layer)
	img.configDigest, img.layerDigest = digest.FromBytes(img.config), digest.FromBytes(img.layer)
	img.manifest = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}`,
		img.configDigest, len(img.config), img.layerDigest, len(img.layer)))
	img.manDigest = digest.FromBytes(img.manifest)
	return img
}

// push stores the image in the registry at base (POST, then PUT with each blob's body).
func (img *benchImage) push(ctx context.Context, base string) error {
	for _, b := range [][]byte{img.config, img.layer} {
		r := &registry{url: base, mono: true}
		if err := r.pushBytes(ctx, img.repo, b); err != nil {
			return err
		}
	}
	return img.putManifest(ctx, base, "v1", 0)
}

// putManifest stores the image's manifest under tag; with n > 0 it carries an annotation
// that makes it a new manifest.
func (img *benchImage) putManifest(ctx context.Context, base, tag string, n uint64) error {
	body := img.manifest
	if n > 0 {
		body = fmt.Appendf(bytes.Clone(body[:len(body)-1]), `,"annotations":{"n":"%d"}}`, n)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+"/v2/"+img.repo+"/manifests/"+tag, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT manifest: %d", resp.StatusCode)
	}
	return nil
}

// pushBytes uploads b to repo with POST, then PUT carrying the body.
func (r *registry) pushBytes(ctx context.Context, repo string, b []byte) error {
	loc, err := r.startUpload(ctx, repo)
	if err != nil {
		return err
	}
	return r.put(ctx, loc, bytes.NewReader(b), int64(len(b)), digest.FromBytes(b).String())
}

// request performs one request and checks it succeeded.
func request(ctx context.Context, method, url string) error {
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s %s: %d", method, url, resp.StatusCode)
	}
	return err
}

// TestBenchLatency times small requests, one at a time, through registryd and CNCF
// Distribution on a MinIO whose every request is held for backendDelay, against one
// direct GetObject / HeadObject / PutObject through the same delay: how many backend
// round trips each request costs.
func TestBenchLatency(t *testing.T) {
	if os.Getenv("REGISTRYD_BENCH") == "" {
		t.Skip("benchmark: set REGISTRYD_BENCH=1 (see bench/README.md)")
	}
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	endpoint := "http://" + delayProxy(t, strings.TrimPrefix(m.Endpoint, "http://"), backendDelay)
	s3cfg := func(bucket string) string {
		return fmt.Sprintf("  s3:\n    bucket: %s\n    region: %s\n    regionendpoint: %s\n    forcepathstyle: true\n"+
			"    accesskey: %s\n    secretkey: %s\n", bucket, m.Region, endpoint, m.AccessKey, m.SecretKey)
	}
	reg := testenv.StartRegistryd(t, "version: 0.1\nlog: {level: warn}\nhttp: {secret: bench-secret-0123456789}\nstorage:\n"+
		s3cfg(m.NewBucket(t))+"  redirect: {disable: true}\n")
	servers := []struct{ label, url string }{{"registryd", reg.URL}}
	if os.Getenv("REGISTRYD_BENCH_NO_DISTRIBUTION") == "" {
		servers = append(servers, struct{ label, url string }{"CNCF Distribution v3.1.2", startDistribution(t, s3cfg(m.NewBucket(t))).(*registry).url})
	}
	img := newBenchImage("bench/latency")
	for _, s := range servers {
		if err := img.push(ctx, s.url); err != nil {
			t.Fatalf("%s: %v", s.label, err)
		}
	}
	c := s3.New(s3.Options{
		Region: m.Region, BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
	})
	bucket := m.NewBucket(t)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("layer"), Body: bytes.NewReader(img.layer)}); err != nil {
		t.Fatal(err)
	}
	direct := map[string]func(k uint64) error{
		"GET": func(uint64) error {
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("layer")})
			if err != nil {
				return err
			}
			defer out.Body.Close()
			_, err = io.Copy(io.Discard, out.Body)
			return err
		},
		"HEAD": func(uint64) error {
			_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String("layer")})
			return err
		},
		"PUT": func(k uint64) error {
			b, err := io.ReadAll(newStream(k, 64<<10))
			if err != nil {
				return err
			}
			_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(fmt.Sprint("put-", k)), Body: bytes.NewReader(b)})
			return err
		},
	}
	get := func(method string, path func(*benchImage) string) func(context.Context, string, uint64) error {
		return func(ctx context.Context, base string, _ uint64) error { return request(ctx, method, base+path(img)) }
	}
	push := func(mono bool) func(context.Context, string, uint64) error {
		return func(ctx context.Context, base string, k uint64) error {
			return (&registry{url: base, mono: mono}).push(ctx, "latency", k, 64<<10, digestOf(k, 64<<10))
		}
	}
	ops := []latencyOp{
		{"blob GET (64 KiB layer)", "GET", get("GET", func(i *benchImage) string { return "/v2/" + i.repo + "/blobs/" + i.layerDigest.String() })},
		{"blob HEAD", "HEAD", get("HEAD", func(i *benchImage) string { return "/v2/" + i.repo + "/blobs/" + i.layerDigest.String() })},
		{"manifest GET by tag", "GET", get("GET", func(i *benchImage) string { return "/v2/" + i.repo + "/manifests/v1" })},
		{"manifest HEAD by tag", "HEAD", get("HEAD", func(i *benchImage) string { return "/v2/" + i.repo + "/manifests/v1" })},
		{"manifest GET by digest", "GET", get("GET", func(i *benchImage) string { return "/v2/" + i.repo + "/manifests/" + i.manDigest.String() })},
		{"blob push, 64 KiB, POST+PUT with body", "PUT", push(true)},
		{"blob push, 64 KiB, POST+PATCH+PUT", "PUT", push(false)},
		{"manifest PUT with a tag", "PUT", func(ctx context.Context, base string, k uint64) error {
			return img.putManifest(ctx, base, fmt.Sprint("t", k), k)
		}},
	}
	const requests = 40
	rounds := benchRounds()
	// ms[op][column] holds one mean per round; column 0 is the direct call.
	ms := make([][][]float64, len(ops))
	for i := range ms {
		ms[i] = make([][]float64, 1+len(servers))
	}
	for round := range rounds {
		for i, op := range ops {
			for col := 0; col <= len(servers); col++ {
				var total time.Duration
				for k := range requests + 3 {
					seed := uint64(round)<<40 | uint64(i)<<32 | uint64(col)<<24 | uint64(k)
					st := time.Now()
					var err error
					if col == 0 {
						err = direct[op.direct](seed)
					} else {
						err = op.run(ctx, servers[col-1].url, seed)
					}
					el := time.Since(st)
					if err != nil {
						t.Fatalf("round %d, %s, column %d: %v", round, op.name, col, err)
					}
					if k >= 3 { // the first requests warm connections up
						total += el
					}
				}
				ms[i][col] = append(ms[i][col], float64(total.Microseconds())/1000/requests)
			}
		}
	}
	var b strings.Builder
	b.WriteString("| request | direct GetObject / HeadObject / PutObject (one backend call) |")
	for _, s := range servers {
		fmt.Fprintf(&b, " %s |", s.label)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(servers)) + "\n")
	for i, op := range ops {
		ref := median(ms[i][0])
		fmt.Fprintf(&b, "| %s | %.1f ms |", op.name, ref)
		for col := 1; col <= len(servers); col++ {
			v := median(ms[i][col])
			fmt.Fprintf(&b, " %.1f ms (%.1f×) |", v, v/ref)
		}
		b.WriteString("\n")
	}
	writeLatencyResults(t, rounds, requests, b.String())
}

func writeLatencyResults(t *testing.T, rounds, requests int, table string) {
	host, _ := os.Hostname()
	text := fmt.Sprintf("# Request latency on a backend with %v per request: registryd and CNCF Distribution v3.1.2 against one direct S3 call\n\n"+
		"Command: `REGISTRYD_BENCH=1 go test ./bench -run TestBenchLatency -v -timeout 30m`\n\n"+
		"Measured %s on %s (2 cores), %d rounds of %d requests per cell, one at a time, after 3 warm-up requests. "+
		"Both servers use one MinIO through a proxy that holds every chunk a client sends for %v (a stand-in for a cloud "+
		"store's first-byte latency), redirects off; the direct column is one aws-sdk-go-v2 GetObject (64 KiB), HeadObject "+
		"or PutObject (64 KiB) through the same proxy. Cells are the median over rounds of the mean latency; the ratio is "+
		"to the direct call, so for reads it counts backend round trips per request (a request with a body, like a "+
		"PutObject, is held at least twice: headers and body). Every push sends new content.\n\n%s",
		backendDelay, time.Now().UTC().Format("2006-01-02 15:04 MST"), host, rounds, requests, backendDelay, table)
	if err := os.WriteFile("results/latency.md", []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text)
}

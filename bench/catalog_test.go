package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/registryd/registryd/internal/testenv"
)

// Sizes of TestBenchCatalog: repositories in the catalog, tags in one repository, and
// the page size of every listing request.
const (
	catalogRepos = 1000
	catalogTags  = 10000
	catalogPage  = 100
)

// populateCatalog writes, straight into bucket (not through the delaying proxy), the link
// objects of repos repositories (a layer link, a revision link and a tag each) and of
// one repository "bench/tags" with tags tags (a current and an index link each): what a
// push writes, without the blobs, which neither listing reads.
func populateCatalog(ctx context.Context, c *s3.Client, bucket string, repos, tags []string) error {
	const root = "docker/registry/v2/repositories/"
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	put := func(key string, d digest.Digest) {
		g.Go(func() error {
			_, err := c.PutObject(gctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: strings.NewReader(d.String())})
			return err
		})
	}
	for _, r := range repos {
		d := digest.FromString(r)
		put(root+r+"/_layers/sha256/"+digest.FromString("layer "+r).Encoded()+"/link", digest.FromString("layer "+r))
		put(root+r+"/_manifests/revisions/sha256/"+d.Encoded()+"/link", d)
		put(root+r+"/_manifests/tags/latest/current/link", d)
	}
	d := digest.FromString("bench/tags")
	put(root+"bench/tags/_manifests/revisions/sha256/"+d.Encoded()+"/link", d)
	for _, tag := range tags {
		put(root+"bench/tags/_manifests/tags/"+tag+"/current/link", d)
		put(root+"bench/tags/_manifests/tags/"+tag+"/index/sha256/"+d.Encoded()+"/link", d)
	}
	return g.Wait()
}

// listPage GETs one page of a listing and returns the names in it (under key) and the
// next page's URL from the Link header ("" on the last page).
func listPage(ctx context.Context, base, pathAndQuery, key string) ([]string, string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+pathAndQuery, nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET %s: %d", pathAndQuery, resp.StatusCode)
	}
	var body map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", pathAndQuery, err)
	}
	var names []string
	if raw := body[key]; len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &names); err != nil {
			return nil, "", fmt.Errorf("GET %s: %w", pathAndQuery, err)
		}
	}
	next := ""
	if l := resp.Header.Get("Link"); l != "" {
		if i, j := strings.Index(l, "<"), strings.Index(l, ">"); i >= 0 && j > i {
			next = l[i+1 : j]
			if u, err := url.Parse(next); err == nil && u.IsAbs() {
				next = u.RequestURI()
			}
		}
	}
	return names, next, nil
}

// catalogOp is one listing request (or walk of pages) timed by TestBenchCatalog; want is
// the names it must return.
type catalogOp struct {
	name string
	run  func(ctx context.Context, base string) ([]string, error)
	want []string
}

// TestBenchCatalog times catalog and tags-list pages through registryd and CNCF
// Distribution, both serving one bucket of a MinIO behind the proxy that holds every
// backend request for backendDelay, with catalogRepos repositories and a repository of
// catalogTags tags written into it directly.
func TestBenchCatalog(t *testing.T) {
	if os.Getenv("REGISTRYD_BENCH") == "" {
		t.Skip("benchmark: set REGISTRYD_BENCH=1 (see bench/README.md)")
	}
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	var chunks atomic.Int64
	endpoint := "http://" + countingDelayProxy(t, strings.TrimPrefix(m.Endpoint, "http://"), backendDelay, &chunks)
	s3cfg := func(bucket string) string {
		return fmt.Sprintf("  s3:\n    bucket: %s\n    region: %s\n    regionendpoint: %s\n    forcepathstyle: true\n"+
			"    accesskey: %s\n    secretkey: %s\n  maintenance:\n    uploadpurging:\n      enabled: false\n",
			bucket, m.Region, endpoint, m.AccessKey, m.SecretKey)
	}
	repos := make([]string, catalogRepos)
	for i := range repos {
		repos[i] = fmt.Sprintf("org%02d/repo%04d", i/100, i)
	}
	tags := make([]string, catalogTags)
	for i := range tags {
		tags[i] = fmt.Sprintf("t%05d", i)
	}
	allRepos := append(slices.Clone(repos), "bench/tags")
	slices.Sort(allRepos)
	direct := s3.New(s3.Options{Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, "")})
	type server struct{ label, url string }
	var servers []server
	st := time.Now()
	bucket := m.NewBucket(t)
	if err := populateCatalog(ctx, direct, bucket, repos, tags); err != nil {
		t.Fatal(err)
	}
	reg := testenv.StartRegistryd(t, "version: 0.1\nlog: {level: warn}\nhttp: {secret: bench-secret-0123456789}\nstorage:\n"+
		s3cfg(bucket)+"  redirect: {disable: true}\n")
	servers = append(servers, server{"registryd", reg.URL})
	if os.Getenv("REGISTRYD_BENCH_NO_DISTRIBUTION") == "" {
		// The same bucket: both only read it.
		servers = append(servers, server{"CNCF Distribution v3.1.2", startDistribution(t, s3cfg(bucket)).(*registry).url})
	}
	t.Logf("populated in %v", time.Since(st))

	page := func(path, key string) func(context.Context, string) ([]string, error) {
		return func(ctx context.Context, base string) ([]string, error) {
			names, _, err := listPage(ctx, base, path, key)
			return names, err
		}
	}
	mid := allRepos[len(allRepos)/2]
	i := slices.Index(allRepos, mid)
	ops := []catalogOp{
		{fmt.Sprintf("catalog, first page (n=%d)", catalogPage), page(fmt.Sprintf("/v2/_catalog?n=%d", catalogPage), "repositories"), allRepos[:catalogPage]},
		{fmt.Sprintf("catalog, a middle page (n=%d&last=%s)", catalogPage, mid), page(fmt.Sprintf("/v2/_catalog?n=%d&last=%s", catalogPage, mid), "repositories"),
			allRepos[i+1 : i+1+catalogPage]},
		{fmt.Sprintf("catalog, every page (n=%d, following Link)", catalogPage), func(ctx context.Context, base string) ([]string, error) {
			var all []string
			next := fmt.Sprintf("/v2/_catalog?n=%d", catalogPage)
			for next != "" {
				names, n, err := listPage(ctx, base, next, "repositories")
				if err != nil {
					return nil, err
				}
				all, next = append(all, names...), n
			}
			return all, nil
		}, allRepos},
		{fmt.Sprintf("tags list, first page (n=%d)", catalogPage), page(fmt.Sprintf("/v2/bench/tags/tags/list?n=%d", catalogPage), "tags"), tags[:catalogPage]},
		{fmt.Sprintf("tags list, a middle page (n=%d&last=%s)", catalogPage, tags[catalogTags/2]),
			page(fmt.Sprintf("/v2/bench/tags/tags/list?n=%d&last=%s", catalogPage, tags[catalogTags/2]), "tags"), tags[catalogTags/2+1 : catalogTags/2+1+catalogPage]},
	}
	const reps = 3
	rounds := benchRounds()
	ms := make([][][]float64, len(ops)) // [op][server] timings in ms
	calls := make([][]int64, len(ops))  // [op][server] backend requests of one run
	for i := range ops {
		ms[i], calls[i] = make([][]float64, len(servers)), make([]int64, len(servers))
	}
	for round := range rounds {
		for i, op := range ops {
			for si, s := range servers {
				for k := range reps + 1 {
					before := chunks.Load()
					st := time.Now()
					got, err := op.run(ctx, s.url)
					el := time.Since(st)
					if err != nil {
						t.Fatalf("%s, %s: %v", s.label, op.name, err)
					}
					if !slices.Equal(got, op.want) {
						t.Fatalf("%s, %s: %d names from %q, want %d from %q", s.label, op.name, len(got), first(got), len(op.want), first(op.want))
					}
					if k == 0 {
						if round == 0 {
							calls[i][si] = chunks.Load() - before
						}
						continue // warms connections up
					}
					ms[i][si] = append(ms[i][si], float64(el.Microseconds())/1000)
				}
			}
		}
	}
	var b strings.Builder
	b.WriteString("| request |")
	for _, s := range servers {
		fmt.Fprintf(&b, " %s | backend requests |", s.label)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|---|", len(servers)) + "\n")
	for i, op := range ops {
		fmt.Fprintf(&b, "| %s |", op.name)
		ref := median(ms[i][0])
		for si := range servers {
			v := median(ms[i][si])
			fmt.Fprintf(&b, " %.0f ms", v)
			if si > 0 {
				fmt.Fprintf(&b, " (%.1f× registryd)", v/ref)
			}
			fmt.Fprintf(&b, " | %d |", calls[i][si])
		}
		b.WriteString("\n")
	}
	host, _ := os.Hostname()
	text := fmt.Sprintf("# Catalog and tags-list pages on a backend with %v per request: registryd and CNCF Distribution v3.1.2\n\n"+
		"Command: `REGISTRYD_BENCH=1 go test ./bench -run TestBenchCatalog -v -timeout 30m`\n\n"+
		"Measured %s on %s (2 cores), %d rounds of %d requests per cell after one warm-up request. Both servers serve one "+
		"bucket of a MinIO behind a proxy that holds every chunk a client sends for %v (a stand-in for a cloud store's "+
		"first-byte latency), written directly beforehand: %d repositories named `orgNN/repoNNNN` "+
		"(a layer link, a revision link and a tag each) and the repository `bench/tags` with %d tags (a current and an index "+
		"link each). Cells are the median latency of the request as a client sees it (for \"every page\", of the whole walk "+
		"of %d-name pages following the Link header); \"backend requests\" counts the requests that reached the proxy "+
		"during one of them (the warm-up), so it shows what a page costs independently of this machine's noise. Every "+
		"response was checked against the expected names.\n\n%s",
		backendDelay, time.Now().UTC().Format("2006-01-02 15:04 MST"), host, rounds, reps, backendDelay,
		catalogRepos, catalogTags, catalogPage, b.String())
	if err := os.WriteFile("results/catalog.md", []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text)
}

func first(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

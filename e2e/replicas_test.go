package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/registryd/registryd/internal/testenv"
)

// startReplicas starts n registryd processes on one shared store with one secret.
func startReplicas(t *testing.T, storage string, n int) []*testenv.Registryd {
	t.Helper()
	cfg := registryConfig(storage, "")
	rs := make([]*testenv.Registryd, n)
	for i := range rs {
		rs[i] = testenv.StartRegistryd(t, cfg)
	}
	return rs
}

// chunkedPush uploads blob to repo in chunks of random sizes, sending request i to
// replica i mod len(rs), and returns the digest.
func chunkedPush(rs []*testenv.Registryd, repo string, blob []byte, rng *rand.Rand, first int) (string, error) {
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	at := func(i int) string { return rs[(first+i)%len(rs)].URL }
	resp, err := http.Post(at(0)+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		return "", fmt.Errorf("start: %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	off, i := 0, 1
	for off < len(blob) {
		n := min(len(blob)-off, 1+rng.IntN(3<<20))
		req, _ := http.NewRequest(http.MethodPatch, at(i)+loc, bytes.NewReader(blob[off:off+n]))
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, off+n-1))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			return "", fmt.Errorf("patch %d-%d on replica %d: %d %s", off, off+n-1, (first+i)%len(rs), resp.StatusCode, body)
		}
		loc = resp.Header.Get("Location")
		off += n
		i++
	}
	req, _ := http.NewRequest(http.MethodPut, at(i)+loc+"&digest="+d, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		return "", fmt.Errorf("put: %d %s", resp.StatusCode, body)
	}
	return d, nil
}

func getBlob(url string) ([]byte, int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

func TestReplicas(t *testing.T) {
	for _, b := range backends() {
		if b.name == "inmemory" {
			continue // not shareable between processes
		}
		t.Run(b.name, func(t *testing.T) {
			rs := startReplicas(t, b.storage(t), 3)
			const pushes = 20
			var wg sync.WaitGroup
			errs := make([]error, pushes)
			blobs := make([][]byte, pushes)
			digests := make([]string, pushes)
			for i := range pushes {
				rng := rand.New(rand.NewPCG(uint64(i), 42))
				blobs[i] = make([]byte, 1<<20+rng.IntN(6<<20))
				for j := range blobs[i] {
					blobs[i][j] = byte(rng.Uint32())
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					digests[i], errs[i] = chunkedPush(rs, fmt.Sprintf("replicas/r%d", i%4), blobs[i], rng, i)
				}()
			}
			wg.Wait()
			for i := range pushes {
				if errs[i] != nil {
					t.Fatalf("push %d: %v", i, errs[i])
				}
				got, status, err := getBlob(rs[(i+1)%3].URL + fmt.Sprintf("/v2/replicas/r%d/blobs/", i%4) + digests[i])
				if err != nil || status != 200 || !bytes.Equal(got, blobs[i]) {
					t.Fatalf("pull %d from another replica: status %d, %d bytes, %v", i, status, len(got), err)
				}
			}
			testTokensAcrossReplicas(t, rs)
			testMonolithicAcrossReplicas(t, rs)
		})
	}
}

// testTokensAcrossReplicas: tokens from another repository, tampered tokens and tokens
// replayed after commit are refused by every replica without writing.
func testTokensAcrossReplicas(t *testing.T, rs []*testenv.Registryd) {
	resp, err := http.Post(rs[0].URL+"/v2/tokens/a/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	blob := []byte("token test blob")
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	tampered := []byte(loc)
	tampered[len(tampered)-5] ^= 0x01
	if tampered[len(tampered)-5] == '%' || tampered[len(tampered)-5] == '&' {
		tampered[len(tampered)-5] = 'A'
	}
	for _, tc := range []struct{ name, url string }{
		{"other repository", rs[1].URL + strings.Replace(loc, "/v2/tokens/a/", "/v2/tokens/b/", 1)},
		{"tampered", rs[2].URL + string(tampered)},
	} {
		req, _ := http.NewRequest(http.MethodPut, tc.url+"&digest="+d, bytes.NewReader(blob))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s token: status %d, want 404", tc.name, resp.StatusCode)
		}
	}
	for _, repo := range []string{"tokens/a", "tokens/b"} {
		if _, status, _ := getBlob(rs[0].URL + "/v2/" + repo + "/blobs/" + d); status != 404 {
			t.Errorf("a refused token wrote blob into %s (status %d)", repo, status)
		}
	}
	req, _ := http.NewRequest(http.MethodPut, rs[1].URL+loc+"&digest="+d, bytes.NewReader(blob))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("legitimate PUT: %d", resp.StatusCode)
	}
	for i, m := range []string{http.MethodPatch, http.MethodPut} {
		req, _ := http.NewRequest(m, rs[(i+2)%3].URL+loc+"&digest="+d, bytes.NewReader([]byte("replay")))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s replayed after commit: status %d, want 404", m, resp.StatusCode)
		}
	}
	if got, status, _ := getBlob(rs[2].URL + "/v2/tokens/a/blobs/" + d); status != 200 || !bytes.Equal(got, blob) {
		t.Errorf("blob after replays: %d %q", status, got)
	}
}

// testMonolithicAcrossReplicas: monolithic pushes (POST ?digest= and POST then PUT with
// the body), which stream straight to the content address, race on one new blob across
// the replicas: all succeed and the blob reads back whole. A push whose body does not
// match its digest is refused and stores nothing.
func testMonolithicAcrossReplicas(t *testing.T, rs []*testenv.Registryd) {
	rng := rand.New(rand.NewPCG(7, 7))
	blob := make([]byte, 9<<20+rng.IntN(1<<20))
	for i := range blob {
		blob[i] = byte(rng.Uint32())
	}
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	put := func(base, repo, dg string, body []byte, twoStep bool) (int, error) {
		u := base + "/v2/" + repo + "/blobs/uploads/?digest=" + dg
		if twoStep {
			resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			u = base + resp.Header.Get("Location") + "&digest=" + dg
		}
		method := http.MethodPost
		if twoStep {
			method = http.MethodPut
		}
		req, _ := http.NewRequest(method, u, bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	const clients = 8
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, err := put(rs[i%len(rs)].URL, fmt.Sprintf("mono/r%d", i%2), d, blob, i%2 == 1)
			if err == nil && status != 201 {
				err = fmt.Errorf("status %d, want 201", status)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("monolithic push %d: %v", i, err)
		}
	}
	for i := range 2 {
		if got, status, err := getBlob(rs[(i+1)%len(rs)].URL + fmt.Sprintf("/v2/mono/r%d/blobs/", i) + d); err != nil || status != 200 || !bytes.Equal(got, blob) {
			t.Errorf("pull mono/r%d: status %d, %d bytes, %v", i, status, len(got), err)
		}
	}
	wrong := bytes.Clone(blob[:1<<20])
	wd := fmt.Sprintf("sha256:%x", sha256.Sum256(wrong))
	wrong[12345] ^= 1
	for _, twoStep := range []bool{false, true} {
		if status, err := put(rs[0].URL, "mono/bad", wd, wrong, twoStep); err != nil || status != 400 {
			t.Errorf("monolithic push with a wrong digest (two-step %v): %d %v, want 400", twoStep, status, err)
		}
	}
	if _, status, _ := getBlob(rs[1].URL + "/v2/mono/bad/blobs/" + wd); status != 404 {
		t.Errorf("a refused monolithic push made %s visible: %d", wd, status)
	}
	// An anonymous mount links any stored blob: 202 (a new upload) proves there is none.
	resp, err := http.Post(rs[2].URL+"/v2/mono/probe/blobs/uploads/?mount="+wd, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Errorf("a refused monolithic push stored %s: anonymous mount answered %d, want 202", wd, resp.StatusCode)
	}
}

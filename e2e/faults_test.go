package e2e

// Real-process fault tests on the filesystem backend: concurrent pushes of one blob and of
// one tag, pulls racing pushes, forged and replayed upload tokens, and registryd killed
// (SIGKILL) mid-push and restarted on the same data. Loopback only, bounded in time.

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/internal/testenv"
)

var fxHTTP = &http.Client{Timeout: 30 * time.Second}

// fxStorage is a filesystem storage section rooted at root.
func fxStorage(root string) string {
	return "  filesystem:\n    rootdirectory: " + root + "\n"
}

type fxResult struct {
	status int
	header http.Header
	body   []byte
}

// fxDo performs one request; a transport or body error is returned as err.
func fxDo(method, u string, hdr map[string]string, body []byte) (fxResult, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return fxResult{}, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := fxHTTP.Do(req)
	if err != nil {
		return fxResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return fxResult{resp.StatusCode, resp.Header, b}, err
}

// fxMust performs a request in the test goroutine that must answer want.
func fxMust(t *testing.T, want int, method, u string, hdr map[string]string, body []byte) fxResult {
	t.Helper()
	r, err := fxDo(method, u, hdr, body)
	if err != nil || r.status != want {
		t.Fatalf("%s %s: %d %s (%v), want %d", method, u, r.status, r.body, err, want)
	}
	return r
}

func fxCode(r fxResult) string {
	var env struct{ Errors []struct{ Code string } }
	if json.Unmarshal(r.body, &env) != nil || len(env.Errors) != 1 {
		return ""
	}
	return env.Errors[0].Code
}

func fxRandom(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// fxStatusError is a request the registry answered with an unexpected status.
type fxStatusError struct {
	what   string
	status int
	body   []byte
}

func (e *fxStatusError) Error() string { return fmt.Sprintf("%s: %d %s", e.what, e.status, e.body) }

// fxRefused reports whether err is a registry answer in [lo, hi].
func fxRefused(err error, lo, hi int) bool {
	var se *fxStatusError
	return errors.As(err, &se) && se.status >= lo && se.status <= hi
}

// fxUpload is a chunked upload's progress as the client knows it.
type fxUpload struct {
	repo  string
	blob  []byte
	loc   string // Location of the last acknowledged state ("" before the POST answered)
	acked int    // bytes acknowledged by that state
}

// fxChunkedPush uploads u.blob in chunks (POST, PATCH..., PUT), recording each acknowledged
// state in u, pausing pause between requests.
func fxChunkedPush(base string, u *fxUpload, chunk int, pause time.Duration) error {
	r, err := fxDo("POST", base+"/v2/"+u.repo+"/blobs/uploads/", nil, nil)
	if err != nil {
		return err
	}
	if r.status != 202 {
		return &fxStatusError{"POST", r.status, r.body}
	}
	u.loc, u.acked = r.header.Get("Location"), 0
	return fxFinishPush(base, u, chunk, pause)
}

// fxFinishPush sends the rest of u.blob from u.acked and completes the upload.
func fxFinishPush(base string, u *fxUpload, chunk int, pause time.Duration) error {
	for u.acked < len(u.blob) {
		end := min(len(u.blob), u.acked+chunk)
		time.Sleep(pause)
		r, err := fxDo("PATCH", base+u.loc, map[string]string{"Content-Range": fmt.Sprintf("%d-%d", u.acked, end-1)}, u.blob[u.acked:end])
		if err != nil {
			return err
		}
		if r.status != 202 || r.header.Get("Range") != fmt.Sprintf("0-%d", end-1) {
			return &fxStatusError{fmt.Sprintf("PATCH %d-%d (Range %q)", u.acked, end-1, r.header.Get("Range")), r.status, r.body}
		}
		u.loc, u.acked = r.header.Get("Location"), end
	}
	time.Sleep(pause)
	d := digest.FromBytes(u.blob)
	r, err := fxDo("PUT", base+u.loc+"&digest="+d.String(), nil, nil)
	if err != nil {
		return err
	}
	if r.status != 201 || r.header.Get("Docker-Content-Digest") != d.String() {
		return &fxStatusError{"PUT", r.status, r.body}
	}
	return nil
}

// fxGetVerified GETs a blob and checks its bytes hash to its digest.
func fxGetVerified(base, repo string, d digest.Digest) error {
	r, err := fxDo("GET", base+"/v2/"+repo+"/blobs/"+d.String(), nil, nil)
	if err != nil {
		return fmt.Errorf("GET blob %s: %w (status %d, %d bytes)", d, err, r.status, len(r.body))
	}
	if r.status != 200 {
		return fmt.Errorf("GET blob %s: %d %s", d, r.status, r.body)
	}
	if got := digest.FromBytes(r.body); got != d {
		return fmt.Errorf("GET blob %s: bytes hash to %s", d, got)
	}
	return nil
}

const fxOCIManifest = "application/vnd.oci.image.manifest.v1+json"

// fxManifest is an image manifest of config and layer, made unique by note.
func fxManifest(config, layer []byte, note string) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}],`+
		`"annotations":{"note":%q}}`, fxOCIManifest, digest.FromBytes(config), len(config), digest.FromBytes(layer), len(layer), note))
}

// fxPushImageBlobs pushes a config and a layer to repo (monolithic) and returns them.
func fxPushImageBlobs(t *testing.T, base, repo string, seed uint64) (config, layer []byte) {
	t.Helper()
	config = []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","seed":%d}`, seed))
	layer = fxRandom(rand.New(rand.NewPCG(seed, 7)), 200<<10)
	for _, b := range [][]byte{config, layer} {
		fxMust(t, 201, "POST", base+"/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), nil, b)
	}
	return config, layer
}

// TestFaultConcurrentSameBlob: 16 clients push the same blob in chunks at once; all
// succeed, and one whole object remains, with no upload left behind.
func TestFaultConcurrentSameBlob(t *testing.T) {
	root := t.TempDir()
	reg := testenv.StartRegistryd(t, registryConfig(fxStorage(root), ""))
	const clients, repo = 16, "race/blob"
	blob := fxRandom(rand.New(rand.NewPCG(16, 16)), 3<<20+12345)
	d := digest.FromBytes(blob)
	start := make(chan struct{})
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fxChunkedPush(reg.URL, &fxUpload{repo: repo, blob: blob}, 512<<10+i*4099, 0)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	if err := fxGetVerified(reg.URL, repo, d); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "docker/registry/v2/blobs/sha256", d.Encoded()[:2], d.Encoded())
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "data" {
		t.Fatalf("blob directory holds %v (%v), want just data", entries, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "data")); err != nil || !bytes.Equal(b, blob) {
		t.Fatalf("stored object differs (%d bytes, %v)", len(b), err)
	}
	if left, _ := os.ReadDir(filepath.Join(root, "docker/registry/v2/repositories", repo, "_uploads")); len(left) != 0 {
		t.Errorf("%d uploads left behind", len(left))
	}
}

// TestFaultConcurrentTagPut: 16 clients PUT different manifests to one tag at once, three
// times; the tag ends on one of them, and GET by tag, HEAD by tag and GET by digest agree.
func TestFaultConcurrentTagPut(t *testing.T) {
	reg := testenv.StartRegistryd(t, registryConfig(fxStorage(t.TempDir()), ""))
	const clients, repo = 16, "race/tag"
	config, layer := fxPushImageBlobs(t, reg.URL, repo, 1)
	for round := range 3 {
		bodies := map[digest.Digest][]byte{}
		ms := make([][]byte, clients)
		for i := range ms {
			ms[i] = fxManifest(config, layer, fmt.Sprintf("round %d client %d", round, i))
			bodies[digest.FromBytes(ms[i])] = ms[i]
		}
		start := make(chan struct{})
		errs := make([]error, clients)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r, err := fxDo("PUT", reg.URL+"/v2/"+repo+"/manifests/latest", map[string]string{"Content-Type": fxOCIManifest}, ms[i])
				if err == nil && (r.status != 201 || r.header.Get("Docker-Content-Digest") != digest.FromBytes(ms[i]).String()) {
					err = fmt.Errorf("%d %s", r.status, r.body)
				}
				errs[i] = err
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d client %d: %v", round, i, err)
			}
		}
		byTag := fxMust(t, 200, "GET", reg.URL+"/v2/"+repo+"/manifests/latest", nil, nil)
		d := digest.Digest(byTag.header.Get("Docker-Content-Digest"))
		if want, ok := bodies[d]; !ok || !bytes.Equal(byTag.body, want) || digest.FromBytes(byTag.body) != d {
			t.Fatalf("round %d: tag holds %s, not one of the pushed manifests", round, d)
		}
		byDigest := fxMust(t, 200, "GET", reg.URL+"/v2/"+repo+"/manifests/"+d.String(), nil, nil)
		head := fxMust(t, 200, "HEAD", reg.URL+"/v2/"+repo+"/manifests/latest", nil, nil)
		if !bytes.Equal(byDigest.body, byTag.body) || head.header.Get("Docker-Content-Digest") != d.String() {
			t.Fatalf("round %d: by tag %s, by digest %d bytes, HEAD %s disagree", round, d, len(byDigest.body), head.header.Get("Docker-Content-Digest"))
		}
		for md := range bodies { // every PUT stored its manifest
			fxMust(t, 200, "HEAD", reg.URL+"/v2/"+repo+"/manifests/"+md.String(), nil, nil)
		}
		if r := fxMust(t, 200, "GET", reg.URL+"/v2/"+repo+"/tags/list", nil, nil); string(bytes.TrimSpace(r.body)) != `{"name":"`+repo+`","tags":["latest"]}` {
			t.Fatalf("tags: %s", r.body)
		}
	}
}

// TestFaultPullDuringPush: while a client keeps re-pointing a tag between two images,
// pullers always get one of them whole: manifest, config and every layer verified.
func TestFaultPullDuringPush(t *testing.T) {
	reg := testenv.StartRegistryd(t, registryConfig(fxStorage(t.TempDir()), ""))
	const repo = "race/pull"
	var raws [2][]byte
	var mts [2]string
	digests := map[string]bool{}
	for i := range raws {
		img, err := random.Image(128<<10, 3)
		if err != nil {
			t.Fatal(err)
		}
		r, err := name.ParseReference(fmt.Sprintf("%s/%s:img%d", reg.Host, repo, i), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(r, img); err != nil {
			t.Fatal(err)
		}
		raws[i], _ = img.RawManifest()
		mt, _ := img.MediaType()
		mts[i] = string(mt)
		dg, _ := img.Digest()
		digests[dg.String()] = true
	}
	flip, err := name.ParseReference(reg.Host+"/"+repo+":flip", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	fxMust(t, 201, "PUT", reg.URL+"/v2/"+repo+"/manifests/flip", map[string]string{"Content-Type": mts[0]}, raws[0])
	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	var pushes int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; time.Now().Before(deadline); i++ {
			r, err := fxDo("PUT", reg.URL+"/v2/"+repo+"/manifests/flip", map[string]string{"Content-Type": mts[i%2]}, raws[i%2])
			if err != nil || r.status != 201 {
				t.Errorf("push %d: %d %v", i, r.status, err)
				return
			}
			pushes = i
		}
	}()
	pulls := make([]int, 3)
	for p := range pulls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := fxPullVerified(flip, digests); err != nil {
					t.Errorf("puller %d: %v", p, err)
					return
				}
				pulls[p]++
			}
		}()
	}
	wg.Wait()
	t.Logf("%d pushes, %v pulls", pushes, pulls)
	if pushes < 10 || pulls[0] == 0 {
		t.Fatalf("too little traffic: %d pushes, %v pulls", pushes, pulls)
	}
}

// fxPullVerified pulls r and checks it is one of the wanted images, whole.
func fxPullVerified(r name.Reference, want map[string]bool) error {
	img, err := remote.Image(r)
	if err != nil {
		return err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	dg, err := img.Digest()
	if err != nil {
		return err
	}
	if !want[dg.String()] || fmt.Sprintf("sha256:%x", sha256.Sum256(raw)) != dg.String() {
		return fmt.Errorf("pulled manifest %s is not one of the pushed images", dg)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cn, _ := img.ConfigName()
	if fmt.Sprintf("sha256:%x", sha256.Sum256(cfg)) != cn.String() {
		return fmt.Errorf("config does not match %s", cn)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		ld, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %s: %w", ld, err)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != ld.String() {
			return fmt.Errorf("layer %s: the pulled bytes hash to %s", ld, got)
		}
	}
	return nil
}

// TestFaultTokens: an upload token used in another repository, a tampered token and a
// token replayed after it was superseded or committed are refused (404
// BLOB_UPLOAD_UNKNOWN; 416 with the upload's Range for a superseded one), and write
// nothing: the target repository holds no such blob, the real upload is undisturbed.
func TestFaultTokens(t *testing.T) {
	root := t.TempDir()
	reg := testenv.StartRegistryd(t, registryConfig(fxStorage(root), ""))
	base := reg.URL
	blob := fxRandom(rand.New(rand.NewPCG(3, 3)), 300<<10)
	d := digest.FromBytes(blob)
	junk := bytes.Repeat([]byte("J"), 100<<10)
	jd := digest.FromBytes(append(bytes.Clone(blob[:100<<10]), junk...))

	r := fxMust(t, 202, "POST", base+"/v2/tok/a/blobs/uploads/", nil, nil)
	r = fxMust(t, 202, "PATCH", base+r.header.Get("Location"), map[string]string{"Content-Range": "0-102399"}, blob[:100<<10])
	loc1 := r.header.Get("Location")

	u, err := url.Parse(loc1)
	if err != nil {
		t.Fatal(err)
	}
	state, err := base64.RawURLEncoding.DecodeString(u.Query().Get("_state"))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(state)
	flipped[len(flipped)/2] ^= 0x40
	tampered := *u
	tampered.RawQuery = url.Values{"_state": {base64.RawURLEncoding.EncodeToString(flipped)}}.Encode()
	id := u.Path[strings.LastIndexByte(u.Path, '/')+1:]
	otherID := id[:len(id)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", id[len(id)-1])+1)%16])

	forged := []struct{ name, loc string }{
		{"other repository", strings.Replace(loc1, "/v2/tok/a/", "/v2/tok/b/", 1)},
		{"tampered state", tampered.String()},
		{"other upload id", strings.Replace(loc1, id, otherID, 1)},
	}
	for _, f := range forged {
		for _, req := range []struct {
			method, suffix string
			hdr            map[string]string
			body           []byte
		}{
			{"PATCH", "", map[string]string{"Content-Range": "102400-204799"}, junk},
			{"PUT", "&digest=" + jd.String(), map[string]string{"Content-Range": "102400-204799"}, junk},
			{"PUT", "&digest=" + d.String(), nil, blob[100<<10:]},
			{"GET", "", nil, nil},
			{"DELETE", "", nil, nil},
		} {
			r, err := fxDo(req.method, base+f.loc+req.suffix, req.hdr, req.body)
			if err != nil || r.status != 404 || fxCode(r) != "BLOB_UPLOAD_UNKNOWN" {
				t.Errorf("%s token, %s: %d %s (%v), want 404 BLOB_UPLOAD_UNKNOWN", f.name, req.method, r.status, r.body, err)
			}
		}
	}
	for _, repo := range []string{"tok/a", "tok/b"} {
		for _, dg := range []digest.Digest{d, jd} {
			if r, _ := fxDo("HEAD", base+"/v2/"+repo+"/blobs/"+dg.String(), nil, nil); r.status != 404 {
				t.Errorf("forged tokens made blob %s visible in %s: %d", dg, repo, r.status)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "docker/registry/v2/repositories/tok/b")); err == nil {
		t.Error("forged tokens wrote into repository tok/b")
	}
	// The real upload is undisturbed.
	if r := fxMust(t, 204, "GET", base+loc1, nil, nil); r.header.Get("Range") != "0-102399" {
		t.Fatalf("upload Range after forged requests: %q", r.header.Get("Range"))
	}
	r = fxMust(t, 202, "PATCH", base+loc1, map[string]string{"Content-Range": "102400-204799"}, blob[100<<10:200<<10])
	loc2 := r.header.Get("Location")
	// A superseded token: 416 with the Range it knows, and nothing appended.
	r, err = fxDo("PATCH", base+loc1, map[string]string{"Content-Range": "102400-204799"}, junk)
	if err != nil || r.status != 416 || fxCode(r) != "BLOB_UPLOAD_INVALID" {
		t.Fatalf("superseded token: %d %s (%v), want 416 BLOB_UPLOAD_INVALID", r.status, r.body, err)
	}
	if r, _ := fxDo("PUT", base+loc1+"&digest="+jd.String(), nil, nil); r.status != 416 {
		t.Fatalf("PUT with a superseded token: %d %s, want 416", r.status, r.body)
	}
	if r := fxMust(t, 204, "GET", base+loc2, nil, nil); r.header.Get("Range") != "0-204799" {
		t.Fatalf("upload Range after a replay: %q", r.header.Get("Range"))
	}
	fxMust(t, 201, "PUT", base+loc2+"&digest="+d.String(), map[string]string{"Content-Range": fmt.Sprintf("204800-%d", len(blob)-1)}, blob[200<<10:])
	// Replays after commit.
	for _, loc := range []string{loc1, loc2} {
		for _, req := range []struct{ method, suffix string }{{"PATCH", ""}, {"PUT", "&digest=" + jd.String()}, {"PUT", "&digest=" + d.String()}} {
			r, err := fxDo(req.method, base+loc+req.suffix, nil, junk)
			if err != nil || r.status != 404 || fxCode(r) != "BLOB_UPLOAD_UNKNOWN" {
				t.Errorf("%s replayed after commit: %d %s (%v), want 404 BLOB_UPLOAD_UNKNOWN", req.method, r.status, r.body, err)
			}
		}
	}
	if err := fxGetVerified(base, "tok/a", d); err != nil {
		t.Fatal(err)
	}
	if r, _ := fxDo("HEAD", base+"/v2/tok/a/blobs/"+jd.String(), nil, nil); r.status != 404 {
		t.Errorf("replayed tokens made a blob visible: %d", r.status)
	}
	if left, _ := os.ReadDir(filepath.Join(root, "docker/registry/v2/repositories/tok/a/_uploads")); len(left) != 0 {
		t.Errorf("%d uploads left behind", len(left))
	}
}

// TestFaultKillRegistryd: registryd is SIGKILLed twice while clients PUT manifests (to
// existing and new tags) and upload blobs in chunks, and restarted on the same data and
// port. After each restart every tag resolves to a whole manifest whose blobs are whole,
// every stored blob hashes to its name, every interrupted upload resumes from its last
// acknowledged state, and pushing again works.
func TestFaultKillRegistryd(t *testing.T) {
	root := t.TempDir()
	cfg := registryConfig(fxStorage(root), "")
	port := testenv.FreePort(t)
	reg := testenv.StartRegistrydOnPort(t, port, cfg)
	const repo, blobRepo = "crash/app", "crash/blobs"
	config, layer := fxPushImageBlobs(t, reg.URL, repo, 2)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))

	for round := range 2 {
		stop := make(chan struct{})
		var mu sync.Mutex
		var interrupted []*fxUpload
		puts, uploads := 0, 0
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					tag := fmt.Sprintf("t%d", w)
					if i%4 == 3 {
						tag = fmt.Sprintf("n%d-%d-%d", round, w, i)
					}
					m := fxManifest(config, layer, fmt.Sprintf("round %d writer %d put %d", round, w, i))
					r, err := fxDo("PUT", reg.URL+"/v2/"+repo+"/manifests/"+tag, map[string]string{"Content-Type": fxOCIManifest}, m)
					if err != nil {
						return // the registry is gone
					}
					if r.status != 201 {
						t.Errorf("manifest PUT: %d %s", r.status, r.body)
						return
					}
					mu.Lock()
					puts++
					mu.Unlock()
					time.Sleep(3 * time.Millisecond)
				}
			}()
		}
		for w := range 3 {
			wg.Add(1)
			seed := rng.Uint64()
			go func() {
				defer wg.Done()
				wr := rand.New(rand.NewPCG(seed, uint64(w)))
				for {
					select {
					case <-stop:
						return
					default:
					}
					u := &fxUpload{repo: blobRepo, blob: fxRandom(wr, 1<<20+wr.IntN(1<<20))}
					if err := fxChunkedPush(reg.URL, u, 200<<10+wr.IntN(100<<10), 10*time.Millisecond); err != nil {
						if fxRefused(err, 0, 999) { // an answer, so from before the kill
							t.Errorf("upload failed before the kill: %v", err)
						}
						if u.loc != "" {
							mu.Lock()
							interrupted = append(interrupted, u)
							mu.Unlock()
						}
						return
					}
					mu.Lock()
					uploads++
					mu.Unlock()
				}
			}()
		}
		time.Sleep(400*time.Millisecond + time.Duration(rng.IntN(600))*time.Millisecond)
		reg.Kill()
		close(stop)
		wg.Wait()
		t.Logf("round %d: killed after %d manifest PUTs and %d uploads, %d uploads interrupted", round, puts, uploads, len(interrupted))

		reg = testenv.StartRegistrydOnPort(t, port, cfg)
		fxCheckStore(t, reg.URL, root)
		for _, u := range interrupted {
			fxResumeInterrupted(t, reg.URL, u)
		}
		fxCheckStore(t, reg.URL, root)
	}
	// Pushing again works, to old tags and with a real client.
	for w := range 4 {
		m := fxManifest(config, layer, fmt.Sprintf("after restart %d", w))
		fxMust(t, 201, "PUT", reg.URL+"/v2/"+repo+fmt.Sprintf("/manifests/t%d", w), map[string]string{"Content-Type": fxOCIManifest}, m)
		if r := fxMust(t, 200, "GET", reg.URL+"/v2/"+repo+fmt.Sprintf("/manifests/t%d", w), nil, nil); !bytes.Equal(r.body, m) {
			t.Fatalf("t%d after re-push: %s", w, r.body)
		}
	}
	img, err := random.Image(256<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(reg.Host+"/crash/new:latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	assertImageRoundTrip(t, r, img)
}

// fxResumeInterrupted continues an upload cut off by the kill from its last acknowledged
// state. When the registry had acknowledged more than the client learnt (the answer was
// lost), the upload cannot continue (416) and is pushed again from the start.
func fxResumeInterrupted(t *testing.T, base string, u *fxUpload) {
	t.Helper()
	d := digest.FromBytes(u.blob)
	r, err := fxDo("GET", base+u.loc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case r.status == 204:
		// The status answers the upload's true Range: the client's state, or further when
		// the registry acknowledged a chunk whose answer the kill lost; then its Location
		// carries a state that continues from there.
		var end int
		if _, err := fmt.Sscanf(r.header.Get("Range"), "0-%d", &end); err != nil || end+1 < u.acked || end >= len(u.blob) {
			t.Fatalf("interrupted upload Range %q, client acknowledged %d of %d bytes", r.header.Get("Range"), u.acked, len(u.blob))
		}
		if end+1 > u.acked && u.acked > 0 {
			t.Logf("upload %s: continuing from the registry's %d bytes, past the client's %d (answer lost in the kill)", d, end+1, u.acked)
		}
		prev := u.acked
		u.loc, u.acked = r.header.Get("Location"), end+1
		if prev == 0 && end == 0 {
			u.acked = 0 // an upload holding no bytes answers 0-0
		}
		err := fxFinishPush(base, u, 256<<10, 0)
		if fxRefused(err, 416, 416) {
			t.Logf("upload %s: acknowledged past the client's last state (answer lost in the kill); pushing again", d)
			err = fxChunkedPush(base, u, 256<<10, 0)
		}
		if err != nil {
			t.Fatalf("resume interrupted upload %s: %v", d, err)
		}
	case r.status == 404 && fxCode(r) == "BLOB_UPLOAD_UNKNOWN":
		// The PUT completed before the kill and only its answer was lost.
		if err := fxGetVerified(base, u.repo, d); err != nil {
			t.Fatalf("upload unknown after the kill but its blob is not there: %v", err)
		}
		return
	default:
		t.Fatalf("status of interrupted upload: %d %s", r.status, r.body)
	}
	if err := fxGetVerified(base, u.repo, d); err != nil {
		t.Fatal(err)
	}
}

// fxCheckStore checks the store after a crash: every blob object hashes to its name, every
// repository's blob links serve verified bytes, every manifest revision and every tag
// resolves to a whole manifest whose config and layers are whole.
func fxCheckStore(t *testing.T, base, root string) {
	t.Helper()
	v2 := filepath.Join(root, "docker/registry/v2")
	blobs := 0
	err := filepath.WalkDir(filepath.Join(v2, "blobs"), func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() || de.Name() != "data" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if want := filepath.Base(filepath.Dir(p)); fmt.Sprintf("%x", sha256.Sum256(b)) != want {
			t.Errorf("stored blob %s does not hash to its name (%d bytes)", want, len(b))
		}
		blobs++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	verified := map[digest.Digest]bool{}
	verify := func(repo string, d digest.Digest) {
		if verified[digest.Digest(repo+"@"+d.String())] {
			return
		}
		if err := fxGetVerified(base, repo, d); err != nil {
			t.Error(err)
		}
		verified[digest.Digest(repo+"@"+d.String())] = true
	}
	checkManifest := func(repo, ref string) {
		r, err := fxDo("GET", base+"/v2/"+repo+"/manifests/"+ref, nil, nil)
		if err != nil || r.status != 200 {
			t.Errorf("manifest %s:%s: %d %s (%v)", repo, ref, r.status, r.body, err)
			return
		}
		d := digest.Digest(r.header.Get("Docker-Content-Digest"))
		if digest.FromBytes(r.body) != d {
			t.Errorf("manifest %s:%s: body does not hash to %s", repo, ref, d)
			return
		}
		var m struct {
			Config struct{ Digest digest.Digest }
			Layers []struct{ Digest digest.Digest }
		}
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Errorf("manifest %s:%s: %v", repo, ref, err)
			return
		}
		verify(repo, m.Config.Digest)
		for _, l := range m.Layers {
			verify(repo, l.Digest)
		}
	}
	repos, err := filepath.Glob(filepath.Join(v2, "repositories", "crash", "*"))
	if err != nil {
		t.Fatal(err)
	}
	tags, revisions := 0, 0
	for _, dir := range repos {
		repo := "crash/" + filepath.Base(dir)
		links, _ := filepath.Glob(filepath.Join(dir, "_layers", "sha256", "*", "link"))
		for _, l := range links {
			verify(repo, digest.NewDigestFromEncoded(digest.SHA256, filepath.Base(filepath.Dir(l))))
		}
		revs, _ := filepath.Glob(filepath.Join(dir, "_manifests", "revisions", "sha256", "*", "link"))
		for _, l := range revs {
			r, err := fxDo("HEAD", base+"/v2/"+repo+"/manifests/sha256:"+filepath.Base(filepath.Dir(l)), nil, nil)
			if err != nil || r.status != 200 {
				t.Errorf("revision %s of %s: %d (%v)", filepath.Base(filepath.Dir(l)), repo, r.status, err)
			}
			revisions++
		}
		last := ""
		for {
			r, err := fxDo("GET", base+"/v2/"+repo+"/tags/list?n=1000&last="+last, nil, nil)
			if err != nil || (r.status != 200 && r.status != 404) {
				t.Fatalf("tags of %s: %d %s (%v)", repo, r.status, r.body, err)
			}
			var l struct{ Tags []string }
			_ = json.Unmarshal(r.body, &l)
			for _, tag := range l.Tags {
				checkManifest(repo, tag)
				tags++
			}
			if r.header.Get("Link") == "" || len(l.Tags) == 0 {
				break
			}
			last = l.Tags[len(l.Tags)-1]
		}
	}
	t.Logf("store: %d blob objects, %d repository blobs, %d manifest revisions, %d tags checked", blobs, len(verified), revisions, tags)
}

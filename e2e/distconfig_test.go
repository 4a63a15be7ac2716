package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/registryd/registryd/internal/testenv"
)

// The tests of this file start registryd with the configurations CNCF Distribution ships
// and documents (copies in config/testdata/distribution) and with the environment the
// community Helm chart (twuni/docker-registry.helm) renders, and check that each serves and
// stores where the configuration says. Overrides are REGISTRY_* variables, as an operator
// would set them: the listen addresses (free ports), a root directory under the test's
// temporary directory, and the emulator's endpoint, bucket and credentials.

// distConfig returns the Distribution configuration file name of config/testdata/distribution.
func distConfig(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "config", "testdata", "distribution", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// pushTestBlob uploads a fresh blob to repo in two requests (POST, then PUT with the
// digest), with basic auth when user is set, and returns its hex digest.
func pushTestBlob(t *testing.T, base, repo, user, password string) string {
	t.Helper()
	data := []byte(fmt.Sprintf("distribution drop-in %s %d", t.Name(), time.Now().UnixNano()))
	sum := sha256.Sum256(data)
	hexDigest := hex.EncodeToString(sum[:])
	do := func(method, u string, body []byte) *http.Response {
		req, err := http.NewRequest(method, u, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := do("POST", base+"/v2/"+repo+"/blobs/uploads/", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST upload: %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if strings.HasPrefix(loc, "/") {
		loc = base + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp = do("PUT", loc+sep+"digest=sha256:"+hexDigest, data)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT upload: %d %s", resp.StatusCode, body)
	}
	resp = do("HEAD", base+"/v2/"+repo+"/blobs/sha256:"+hexDigest, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD blob: %d", resp.StatusCode)
	}
	return hexDigest
}

// blobKey is the object key of a blob under root (Distribution's layout).
func blobKey(root, hexDigest string) string {
	return strings.TrimPrefix(path.Join(root, "docker/registry/v2/blobs/sha256", hexDigest[:2], hexDigest, "data"), "/")
}

// warnedKeys returns the start-up warning about Distribution settings from registryd's log.
func warnedKeys(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "CNCF Distribution settings registryd does not implement") {
			return line
		}
	}
	return ""
}

// TestDistributionShippedConfigs: each filesystem configuration Distribution ships (the
// release image's config.yml is config-dev.yml) or documents starts registryd, answers
// /v2/ with the configured headers, stores a pushed blob under the configured root
// directory, and names the Distribution keys it does not implement in one warning.
// Distribution's pull-through cache configuration starts read-only.
func TestDistributionShippedConfigs(t *testing.T) {
	testenv.SkipIfShort(t, "registryd processes")
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(htpasswdLine(t, "docker", "pw")), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file     string
		env      []string
		user     string
		readOnly bool
		nosniff  bool
		warned   []string
	}{
		{"config-dev.yml", nil, "", false, true, []string{"storage.cache", "storage.tag", "health", "http.debug.prometheus"}},
		{"config-example.yml", []string{"REGISTRY_AUTH_HTPASSWD_PATH=" + htpasswd}, "docker", false, true, []string{"storage.cache", "health"}},
		{"docs-development.yml", nil, "", false, false, nil},
		{"osx.yml", nil, "", false, false, []string{"storage.cache"}},
		{"config-cache.yml", nil, "", true, true, []string{"redis", "notifications", "proxy"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "registry")
			env := append([]string{"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=" + root,
				"REGISTRY_HTTP_DEBUG_ADDR=" + testenv.Addr(testenv.FreePort(t))}, tc.env...)
			reg := testenv.StartRegistryd(t, distConfig(t, tc.file), env...)
			resp, err := http.Get(reg.URL + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := http.StatusOK
			if tc.user != "" {
				want = http.StatusUnauthorized
			}
			if resp.StatusCode != want {
				t.Errorf("GET /v2/: %d, want %d", resp.StatusCode, want)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); tc.nosniff != (got == "nosniff") {
				t.Errorf("X-Content-Type-Options %q (http.headers)", got)
			}
			if tc.readOnly {
				req, _ := http.NewRequest("POST", reg.URL+"/v2/app/blobs/uploads/", nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(body), "UNSUPPORTED") {
					t.Errorf("push to a proxy configuration: %d %s, want 405 UNSUPPORTED", resp.StatusCode, body)
				}
			} else {
				d := pushTestBlob(t, reg.URL, "library/app", tc.user, "pw")
				if _, err := os.Stat(filepath.Join(root, blobKey("", d))); err != nil {
					t.Errorf("blob not stored under the configured root: %v", err)
				}
			}
			w := warnedKeys(t, reg.Output())
			for _, k := range tc.warned {
				if !strings.Contains(w, k) {
					t.Errorf("start-up warning %q lacks %s", w, k)
				}
			}
		})
	}
}

// minioClient is an S3 client of m, for checking what registryd stored.
func minioClient(m *testenv.MinIO) *s3.Client {
	return s3.New(s3.Options{Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, "")})
}

// TestDistributionS3Configs: Distribution's own S3 test configuration, and the config.yml
// plus environment the community Helm chart renders for storage: s3 (with and without
// REGISTRY_STORAGE=s3 naming the driver), and the release image's config.yml with
// REGISTRY_STORAGE=s3 replacing its filesystem driver, start registryd against MinIO and
// store the pushed blob in the bucket under the configured root directory.
func TestDistributionS3Configs(t *testing.T) {
	testenv.SkipIfShort(t, "MinIO and registryd")
	m := testenv.StartMinIO(t)
	client := minioClient(m)
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(htpasswdLine(t, "chart", "pw")), 0o600); err != nil {
		t.Fatal(err)
	}
	// What templates/_helpers.tpl renders for storage: s3 with s3.regionEndpoint,
	// s3.rootdirectory, s3.secure, s3.forcepathstyle, secrets.s3 keys, secrets.htpasswd,
	// secrets.haSharedSecret and persistence.deleteEnabled set.
	chartEnv := func(bucket string) []string {
		return []string{
			"REGISTRY_HTTP_SECRET=ChartSharedSecre",
			"REGISTRY_AUTH=htpasswd", "REGISTRY_AUTH_HTPASSWD_REALM=Registry Realm", "REGISTRY_AUTH_HTPASSWD_PATH=" + htpasswd,
			"REGISTRY_STORAGE_S3_REGION=" + m.Region, "REGISTRY_STORAGE_S3_BUCKET=" + bucket,
			"REGISTRY_STORAGE_S3_ACCESSKEY=" + m.AccessKey, "REGISTRY_STORAGE_S3_SECRETKEY=" + m.SecretKey,
			"REGISTRY_STORAGE_S3_REGIONENDPOINT=" + m.Endpoint, "REGISTRY_STORAGE_S3_ROOTDIRECTORY=/object/prefix",
			"REGISTRY_STORAGE_S3_SECURE=false", "REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true",
			"REGISTRY_STORAGE_DELETE_ENABLED=true",
			"REGISTRY_HTTP_DEBUG_ADDR=" + testenv.Addr(testenv.FreePort(t)),
		}
	}
	for _, tc := range []struct {
		name, file, root, user string
		env                    func(bucket string) []string
	}{
		{"conf-local-s3.yml", "conf-local-s3.yml", "registry-v2", "", func(bucket string) []string {
			return []string{"REGISTRY_STORAGE_S3_REGIONENDPOINT=" + m.Endpoint, "REGISTRY_STORAGE_S3_BUCKET=" + bucket,
				"REGISTRY_STORAGE_S3_ACCESSKEY=" + m.AccessKey, "REGISTRY_STORAGE_S3_SECRETKEY=" + m.SecretKey,
				"REGISTRY_HTTP_DEBUG_ADDR=" + testenv.Addr(testenv.FreePort(t))}
		}},
		{"helm chart", "twuni-chart-config.yml", "object/prefix", "chart", chartEnv},
		{"helm chart, REGISTRY_STORAGE=s3", "twuni-chart-config.yml", "object/prefix", "chart", func(bucket string) []string {
			return append(chartEnv(bucket), "REGISTRY_STORAGE=s3")
		}},
		// The release image's config.yml selects filesystem; REGISTRY_STORAGE=s3 replaces it,
		// as in Distribution.
		{"config-dev.yml, REGISTRY_STORAGE=s3", "config-dev.yml", "", "", func(bucket string) []string {
			return []string{"REGISTRY_STORAGE=s3", "REGISTRY_STORAGE_S3_REGION=" + m.Region, "REGISTRY_STORAGE_S3_BUCKET=" + bucket,
				"REGISTRY_STORAGE_S3_REGIONENDPOINT=" + m.Endpoint, "REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true",
				"REGISTRY_STORAGE_S3_ACCESSKEY=" + m.AccessKey, "REGISTRY_STORAGE_S3_SECRETKEY=" + m.SecretKey,
				"REGISTRY_HTTP_DEBUG_ADDR=" + testenv.Addr(testenv.FreePort(t))}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bucket := m.NewBucket(t)
			reg := testenv.StartRegistryd(t, distConfig(t, tc.file), tc.env(bucket)...)
			d := pushTestBlob(t, reg.URL, "library/app", tc.user, "pw")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			key := blobKey(tc.root, d)
			if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key}); err != nil {
				t.Errorf("blob not at s3://%s/%s: %v", bucket, key, err)
			}
			w := warnedKeys(t, reg.Output())
			if !strings.Contains(w, "storage.cache") {
				t.Errorf("start-up warning %q lacks storage.cache", w)
			}
			if strings.HasPrefix(tc.name, "config-dev.yml") && !strings.Contains(w, "storage.filesystem (file): replaced by REGISTRY_STORAGE=s3") {
				t.Errorf("start-up warning %q does not name the replaced filesystem section", w)
			}
		})
	}
}

// TestDistributionAzureSharedKey: a Distribution v3 Azure configuration with
// credentials {type: shared_key} starts registryd against Azurite (its service URL and a
// fresh container from the environment) and stores the pushed blob in the container under
// the configured root directory.
func TestDistributionAzureSharedKey(t *testing.T) {
	testenv.SkipIfShort(t, "Azurite and registryd")
	a := testenv.StartAzurite(t)
	container := a.NewContainer(t)
	reg := testenv.StartRegistryd(t, distConfig(t, "azure-shared-key.yml"),
		"REGISTRY_STORAGE_AZURE_SERVICEURL="+a.ServiceURL, "REGISTRY_STORAGE_AZURE_CONTAINER="+container)
	d := pushTestBlob(t, reg.URL, "library/app", "", "")
	cred, err := service.NewSharedKeyCredential(a.Account, a.Key)
	if err != nil {
		t.Fatal(err)
	}
	client, err := service.NewClientWithSharedKeyCredential(a.ServiceURL, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := blobKey("/az/object/name/prefix", d)
	if _, err := client.NewContainerClient(container).NewBlobClient(key).GetProperties(ctx, nil); err != nil {
		t.Errorf("blob not at %s/%s: %v", container, key, err)
	}
	if w := warnedKeys(t, reg.Output()); !strings.Contains(w, "storage.azure.max_retries") || !strings.Contains(w, "health") {
		t.Errorf("start-up warning %q lacks storage.azure.max_retries or health", w)
	}
}

// TestDistributionRefusedSections: a Distribution configuration with a section registryd
// cannot honour without serving more openly or otherwise than it says stops the start,
// naming the key.
func TestDistributionRefusedSections(t *testing.T) {
	testenv.SkipIfShort(t, "registryd processes")
	bin := testenv.RegistrydBinary(t)
	base := distConfig(t, "config-dev.yml")
	for _, c := range []struct {
		name, extra string
		env         []string
		want        string
	}{
		{"cloudfront middleware", "middleware:\n  storage:\n    - name: cloudfront\n      options:\n        baseurl: https://d111111abcdef8.cloudfront.net\n", nil,
			"middleware.storage[0]: cloudfront"},
		{"silly auth", "auth:\n  silly:\n    realm: silly-realm\n    service: silly-service\n", nil, "auth.silly"},
		{"silly auth from the environment", "", []string{"REGISTRY_AUTH=silly"}, "auth.silly"},
		{"let's encrypt", "", []string{"REGISTRY_HTTP_TLS_LETSENCRYPT_CACHEFILE=/c"}, "http.tls.letsencrypt"},
		{"repository classes", "policy:\n  repository:\n    classes: [application/vnd.oci.image.config.v1+json]\n", nil, "policy.repository.classes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "config.yml")
			if err := os.WriteFile(cfg, []byte(base+c.extra), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve", cfg)
			cmd.Env = append([]string{"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=" + t.TempDir(),
				"REGISTRY_HTTP_ADDR=" + testenv.Addr(testenv.FreePort(t))}, c.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(startupFailure(out), c.want) {
				t.Errorf("%v, output %q; want a failure naming %q", err, out, c.want)
			}
		})
	}
}

// TestDistributionGCSKeyfile: Distribution's GCS configuration with a service account key
// file starts registryd against fake-gcs-server (registryd's storage.gcs.endpoint from the
// environment: with STORAGE_EMULATOR_HOST, Google's SDK sends no credentials at all),
// authenticates with the key (its token endpoint is a server of the test) and stores the
// pushed blob under the configured root directory.
func TestDistributionGCSKeyfile(t *testing.T) {
	testenv.SkipIfShort(t, "fake-gcs-server and registryd")
	f := testenv.StartFakeGCS(t)
	bucket := f.NewBucket(t)
	var tokens atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if r.Form.Get("assertion") == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		tokens.Add(1)
		_, _ = io.WriteString(w, `{"access_token":"test-token","token_type":"Bearer","expires_in":3600}`)
	}))
	defer ts.Close()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "test", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "registry@test.iam.gserviceaccount.com", "client_id": "1", "token_uri": ts.URL + "/token"})
	keyfile := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(keyfile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	reg := testenv.StartRegistryd(t, distConfig(t, "gcs-keyfile.yml"), "REGISTRY_STORAGE_GCS_ENDPOINT="+f.Endpoint,
		"REGISTRY_STORAGE_GCS_BUCKET="+bucket, "REGISTRY_STORAGE_GCS_KEYFILE="+keyfile)
	d := pushTestBlob(t, reg.URL, "library/app", "", "")
	obj := blobKey("/gcs/object/name/prefix", d)
	resp, err := http.Get(f.Endpoint + "b/" + bucket + "/o/" + url.PathEscape(obj))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("blob not at gs://%s/%s: %d", bucket, obj, resp.StatusCode)
	}
	if tokens.Load() == 0 {
		t.Error("the key file's token endpoint was never asked: the key was not used")
	}
}

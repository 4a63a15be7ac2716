package testenv

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// MinIO is a running MinIO server.
type MinIO struct {
	*Process
	// Endpoint is "http://127.0.0.1:<port>" (path-style buckets).
	Endpoint string
	// AccessKey and SecretKey are the root credentials; Region is what requests are
	// signed for.
	AccessKey, SecretKey, Region string
}

// StartMinIO starts `minio server` on a free loopback port (console on another) with its
// data under a temporary directory, and stops it when the test ends. A missing minio
// binary fails the test.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	return StartMinIOAt(t, t.TempDir(), FreePort(t))
}

// StartMinIOAt starts MinIO with its data in dir on the given port, so a test can stop it
// (an outage) and start it again on the same address with the same data.
func StartMinIOAt(t testing.TB, dir string, port int) *MinIO {
	t.Helper()
	return startMinIO(t, dir, port)
}

// MinIOKMSKey is the name of the key of the built-in KMS of StartMinIOWithKMS: the key ID
// for SSE-KMS requests.
const MinIOKMSKey = "registryd-test-key"

// StartMinIOWithKMS starts MinIO with a built-in single-key KMS (MinIOKMSKey), so SSE-S3
// and SSE-KMS requests work against it.
func StartMinIOWithKMS(t testing.TB) *MinIO {
	t.Helper()
	// A fixed 32-byte test key, base64-encoded.
	return startMinIO(t, t.TempDir(), FreePort(t),
		"MINIO_KMS_SECRET_KEY="+MinIOKMSKey+":cmVnaXN0cnlkLXRlc3Qta21zLWtleS0zMi1ieXRlcyE=")
}

func startMinIO(t testing.TB, dir string, port int, env ...string) *MinIO {
	t.Helper()
	bin := Tool(t, "minio")
	addr, console := Addr(port), Addr(FreePort(t))
	m := &MinIO{
		Endpoint:  "http://" + addr,
		AccessKey: "registryd-test",
		SecretKey: "registryd-test-secret",
		Region:    "us-east-1",
	}
	m.Process = Start(t, Spec{
		Name: "minio",
		Path: bin,
		Args: []string{"server", dir, "--address", addr, "--console-address", console, "--quiet"},
		Env: append([]string{
			"MINIO_ROOT_USER=" + m.AccessKey,
			"MINIO_ROOT_PASSWORD=" + m.SecretKey,
			"MINIO_REGION=" + m.Region,
			"MINIO_BROWSER=off",
			"MINIO_UPDATE=off",
			"MINIO_CI_CD=1",
		}, env...),
		Addr:  addr,
		Ready: HTTPReady(m.Endpoint + "/minio/health/live"),
	})
	return m
}

// NewBucket creates a bucket with a fresh random name and returns the name. Right after
// start MinIO may refuse bucket creation for a moment, so it retries for a few seconds.
func (m *MinIO) NewBucket(t testing.TB) string {
	t.Helper()
	return createNamed(t, "bucket", m.createBucket)
}

// createBucket sends CreateBucket signed with AWS Signature Version 4. It is written
// against the REST API directly so the test environment does not depend on the SDK
// under test.
func (m *MinIO) createBucket(ctx context.Context, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, m.Endpoint+"/"+name, http.NoBody)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	amzDate, day := now.Format("20060102T150405Z"), now.Format("20060102")
	emptyHash := hex.EncodeToString(minioSHA256(nil))
	req.Header.Set("x-amz-date", amzDate)
	req.Header.Set("x-amz-content-sha256", emptyHash)
	req.ContentLength = 0
	const signed = "host;x-amz-content-sha256;x-amz-date"
	canonical := strings.Join([]string{
		http.MethodPut, "/" + name, "",
		"host:" + req.URL.Host, "x-amz-content-sha256:" + emptyHash, "x-amz-date:" + amzDate, "",
		signed, emptyHash,
	}, "\n")
	scope := day + "/" + m.Region + "/s3/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(minioSHA256([]byte(canonical)))
	key := []byte("AWS4" + m.SecretKey)
	for _, s := range []string{day, m.Region, "s3", "aws4_request"} {
		key = minioHMAC(key, s)
	}
	req.Header.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		m.AccessKey, scope, signed, hex.EncodeToString(minioHMAC(key, toSign))))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("create bucket: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

func minioSHA256(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

func minioHMAC(key []byte, s string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(s))
	return mac.Sum(nil)
}

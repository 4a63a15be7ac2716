package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/registryd/registryd/internal/testenv"
)

// TestUploadPurgingS3: an upload abandoned mid-way on S3 (one multipart part uploaded, the
// tail in its sidecar) is purged once older than storage.maintenance.uploadpurging.age:
// its token answers 404 BLOB_UPLOAD_UNKNOWN, its objects are gone and its incomplete
// multipart upload is aborted, so the bucket stops paying for the parts.
func TestUploadPurgingS3(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := testenv.StartMinIO(t)
	bucket := m.NewBucket(t)
	reg := testenv.StartRegistryd(t, registryConfig(s3Storage(m, bucket, m.AccessKey, m.SecretKey, m.Endpoint),
		"")+"  maintenance:\n    uploadpurging:\n      age: 3s\n      interval: 1s\n")
	base := "http://" + reg.Host

	resp, err := http.Post(base+"/v2/purge/me/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("POST: %d, Location %q", resp.StatusCode, loc)
	}
	if !strings.HasPrefix(loc, "http") {
		loc = base + loc
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc, bytes.NewReader(bytes.Repeat([]byte("abandoned"), 700<<10)))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH: %d", resp.StatusCode)
	}
	loc = resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = base + loc
	}

	c := s3.New(s3.Options{Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, "")})
	prefix := "docker/registry/v2/repositories/purge/me/_uploads/"
	objects := func() []string {
		out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		return keys
	}
	var dataKey string
	for _, k := range objects() {
		if strings.HasSuffix(k, "/startedat") {
			dataKey = strings.TrimSuffix(k, "startedat") + "data"
		}
	}
	multipart := func() int {
		out, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &dataKey})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Uploads)
	}
	if dataKey == "" || multipart() != 1 {
		t.Fatalf("the abandoned upload should hold one multipart upload: objects %v", objects())
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			if !bytes.Contains(body, []byte("BLOB_UPLOAD_UNKNOWN")) {
				t.Fatalf("purged upload: 404 without BLOB_UPLOAD_UNKNOWN: %s", body)
			}
			break
		}
		if resp.StatusCode != http.StatusNoContent || time.Now().After(deadline) {
			t.Fatalf("upload status: %d %s (purging should have removed it by now)", resp.StatusCode, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The marker goes first; the rest follows within the same purge.
	deadline = time.Now().Add(10 * time.Second)
	for len(objects()) != 0 || multipart() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after purging: objects %v, %d multipart uploads", objects(), multipart())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

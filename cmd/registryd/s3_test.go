package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
)

// TestS3Client checks the client newS3Client builds from storage.s3, without any request.
func TestS3Client(t *testing.T) {
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	insecure := false
	for _, c := range []struct {
		name     string
		cfg      config.S3
		endpoint string // BaseEndpoint, "" for none
		region   string
		wantErr  bool
	}{
		{"region only", config.S3{Bucket: "b", Region: "eu-west-1"}, "", "eu-west-1", false},
		{"endpoint without region", config.S3{Bucket: "b", RegionEndpoint: "http://127.0.0.1:9000", ForcePathStyle: true}, "http://127.0.0.1:9000", "us-east-1", false},
		{"bare host is https", config.S3{Bucket: "b", Region: "r", RegionEndpoint: "minio.example:9000"}, "https://minio.example:9000", "r", false},
		{"bare host, secure false", config.S3{Bucket: "b", Region: "r", RegionEndpoint: "minio.example:9000", Secure: &insecure}, "http://minio.example:9000", "r", false},
		{"not http", config.S3{Bucket: "b", Region: "r", RegionEndpoint: "ftp://x"}, "", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			client, err := newS3Client(context.Background(), c.cfg)
			if c.wantErr {
				if !errors.Is(err, driver.ErrMisconfigured) {
					t.Fatalf("want ErrMisconfigured, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o := client.Options()
			if got := aws.ToString(o.BaseEndpoint); got != c.endpoint || o.Region != c.region || o.UsePathStyle != c.cfg.ForcePathStyle {
				t.Errorf("endpoint %q, region %q, path style %v", got, o.Region, o.UsePathStyle)
			}
			if _, err := openS3(context.Background(), c.cfg, driver.DefaultRetryPolicy()); err != nil {
				t.Errorf("openS3: %v", err)
			}
		})
	}
}

// TestS3DistributionKeys: Distribution's S3 keys reach the client and the requests:
// endpoint switches in the client options, objectacl and useragent on the wire, storage
// class NONE sends none, loglevel logs the SDK's requests at debug level, and
// redirectendpoint is the host of signed URLs.
func TestS3DistributionKeys(t *testing.T) {
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Run("options", func(t *testing.T) {
		client, err := newS3Client(context.Background(), config.S3{Bucket: "b", Region: "eu-west-1",
			Accelerate: true, UseDualStack: true, UseFIPSEndpoint: true})
		if err != nil {
			t.Fatal(err)
		}
		o := client.Options()
		if !o.UseAccelerate || o.EndpointOptions.UseDualStackEndpoint != aws.DualStackEndpointStateEnabled ||
			o.EndpointOptions.UseFIPSEndpoint != aws.FIPSEndpointStateEnabled {
			t.Errorf("options: accelerate %v, dual-stack %v, FIPS %v", o.UseAccelerate, o.EndpointOptions.UseDualStackEndpoint, o.EndpointOptions.UseFIPSEndpoint)
		}
		ep, err := o.EndpointResolverV2.ResolveEndpoint(context.Background(), s3.EndpointParameters{
			Bucket: aws.String("my-bucket"), Region: aws.String("us-east-1"), Accelerate: aws.Bool(true), ForcePathStyle: aws.Bool(false)})
		if err != nil || ep.URI.Host != "my-bucket.s3-accelerate.amazonaws.com" {
			t.Errorf("accelerated endpoint %v, %v", ep.URI, err)
		}
	})
	t.Run("requests", func(t *testing.T) {
		var mu sync.Mutex
		var seen []http.Header
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			mu.Lock()
			seen = append(seen, r.Header.Clone())
			mu.Unlock()
			w.Header().Set("ETag", `"x"`)
		}))
		defer srv.Close()
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		cfg := config.S3{Bucket: "b", RegionEndpoint: srv.URL, ForcePathStyle: true, AccessKey: "a", SecretKey: "s",
			ObjectACL: "bucket-owner-full-control", UserAgent: "distribution-compat-test", StorageClass: "NONE",
			LogLevel: "debug", RedirectEndpoint: "https://cdn.example.com"}
		d, err := openS3(withSDKLogger(context.Background(), log), cfg, driver.RetryPolicy{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Put(context.Background(), "docker/registry/v2/x", strings.NewReader("data"), 4); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		h := seen[len(seen)-1]
		mu.Unlock()
		if h.Get("X-Amz-Acl") != "bucket-owner-full-control" || !strings.Contains(h.Get("User-Agent"), "distribution-compat-test") ||
			h.Get("X-Amz-Storage-Class") != "" {
			t.Errorf("PutObject headers: %v", h)
		}
		if !strings.Contains(logs.String(), "s3 sdk: ") || !strings.Contains(logs.String(), "PUT /b/docker/registry/v2/x") {
			t.Errorf("loglevel debug logged %q", logs.String())
		}
		u, err := d.URL(context.Background(), "docker/registry/v2/x", time.Minute)
		if err != nil || !strings.HasPrefix(u, "https://cdn.example.com/b/docker/registry/v2/x?") {
			t.Errorf("signed URL %q, %v", u, err)
		}
	})
	for level, want := range map[string]aws.ClientLogMode{"": 0, "off": 0, "debug": aws.LogRequest | aws.LogResponse,
		"debugwithhttpbody": aws.LogRequestWithBody | aws.LogResponseWithBody, "debugwithsigning": aws.LogRequest | aws.LogResponse | aws.LogSigning} {
		if got := s3LogMode(level); got != want {
			t.Errorf("s3LogMode(%q) = %v, want %v", level, got, want)
		}
	}
}

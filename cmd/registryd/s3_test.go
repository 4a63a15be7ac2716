package main

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

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

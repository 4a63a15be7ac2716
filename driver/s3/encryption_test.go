package s3_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/testsuite"
	"github.com/registryd/registryd/internal/testenv"
)

// TestS3Encrypted runs against a MinIO with a KMS: with `encrypt` (SSE-S3) and with
// `encrypt` and `keyid` (SSE-KMS), every way the driver creates an object (Put, a Writer
// committed in one PutObject or as a multipart upload, CommitTo another path, CopyObject
// and the multipart copy, the resume sidecar) stores it encrypted as configured and reads
// it back; with SSE-KMS the whole driver suite passes too.
func TestS3Encrypted(t *testing.T) {
	isolate(t)
	m := testenv.StartMinIOWithKMS(t)
	raw := awss3.New(awss3.Options{
		Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
	})
	for _, tc := range []struct {
		name    string
		keyID   string
		wantSSE types.ServerSideEncryption
		suite   bool
	}{
		{"SSE-S3", "", types.ServerSideEncryptionAes256, false},
		{"SSE-KMS", testenv.MinIOKMSKey, types.ServerSideEncryptionAwsKms, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			bucket := m.NewBucket(t)
			cfg := minioConfig(m, bucket)
			cfg.Encrypt, cfg.KMSKeyID = true, tc.keyID
			cfg.CopyThreshold = partSize // larger objects are copied part by part
			d := newDriver(t, cfg)
			check := func(p string, want []byte) {
				t.Helper()
				out, err := raw.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &bucket, Key: aws.String(p)})
				if err != nil {
					t.Fatalf("head %s: %v", p, err)
				}
				if out.ServerSideEncryption != tc.wantSSE {
					t.Errorf("%s: server-side encryption %q, want %q", p, out.ServerSideEncryption, tc.wantSSE)
				}
				if tc.keyID != "" && !bytes.HasSuffix([]byte(aws.ToString(out.SSEKMSKeyId)), []byte(tc.keyID)) {
					t.Errorf("%s: KMS key %q, want %q", p, aws.ToString(out.SSEKMSKeyId), tc.keyID)
				}
				if want == nil {
					return
				}
				rc, err := d.Reader(ctx, p, 0, -1)
				if err != nil {
					t.Fatalf("read %s: %v", p, err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("read %s: %d bytes (%v), want %d", p, len(got), err, len(want))
				}
			}
			small := []byte("encrypted at rest")
			large := bytes.Repeat([]byte("0123456789abcdef"), (2*partSize+4321)/16)
			if err := d.Put(ctx, "put", bytes.NewReader(small), int64(len(small))); err != nil {
				t.Fatal(err)
			}
			check("put", small)
			if err := d.Put(ctx, "put-large", bytes.NewReader(large), int64(len(large))); err != nil {
				t.Fatal(err)
			}
			check("put-large", large)

			// A resumed session leaves a sidecar, then commits as a multipart upload at
			// another path.
			w, err := d.Writer(ctx, "session/data", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(large[:partSize+100]); err != nil {
				t.Fatal(err)
			}
			state, err := w.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			list, err := raw.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String("session/")})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Contents) == 0 {
				t.Fatal("no sidecar holds the session's tail")
			}
			for _, o := range list.Contents {
				check(aws.ToString(o.Key), nil) // the sidecar holding the tail
			}
			if w, err = d.Writer(ctx, "session/data", state); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(large[partSize+100:]); err != nil {
				t.Fatal(err)
			}
			if _, err := driver.CommitTo(ctx, d, w, "session/data", "committed-to"); err != nil {
				t.Fatal(err)
			}
			check("committed-to", large)

			// A session that never fills a part is one PutObject at the other path.
			if w, err = d.Writer(ctx, "session2/data", nil); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(small); err != nil {
				t.Fatal(err)
			}
			if _, err := driver.CommitTo(ctx, d, w, "session2/data", "single"); err != nil {
				t.Fatal(err)
			}
			check("single", small)

			if err := d.Copy(ctx, "put", "copied"); err != nil {
				t.Fatal(err)
			}
			check("copied", small)
			if err := d.Copy(ctx, "put-large", "copied-large"); err != nil {
				t.Fatal(err)
			}
			check("copied-large", large)

			if tc.suite {
				testsuite.Run(t, testsuite.Harness{Driver: d, PartSize: partSize})
			}
		})
	}
}

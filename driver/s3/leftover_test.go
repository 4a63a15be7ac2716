package s3

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/registryd/registryd/internal/testenv"
)

// TestNoLeftoverUploads: every way a session ends (Commit, Abort, a writer abandoned by
// its context before or after a State, a large Put whose body fails) leaves no multipart
// upload and no sidecar in the bucket. The conformance suite cannot see multipart
// uploads, so this looks at the bucket directly.
func TestNoLeftoverUploads(t *testing.T) {
	for _, k := range []string{"AWS_CA_BUNDLE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	m := testenv.StartMinIO(t)
	bucket := m.NewBucket(t)
	ctx := context.Background()
	d, err := New(NewTestClient(m.Region, m.Endpoint, m.AccessKey, m.SecretKey), bucket, Options{ChunkSize: minChunkSize})
	if err != nil {
		t.Fatal(err)
	}
	part := bytes.Repeat([]byte("p"), minChunkSize)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// writeAbandoned writes more than a part through a writer whose context then ends.
	writeAbandoned := func(p string, resume []byte) {
		wctx, cancel := context.WithCancel(ctx)
		w, err := d.Writer(wctx, p, resume)
		must(err)
		_, err = w.Write(part)
		must(err)
		_, err = w.Write([]byte("more"))
		must(err)
		cancel()
	}

	// Abandoned before any State: the upload it created is named by no state.
	writeAbandoned("a/data", nil)

	// Abandoned after resuming a state without parts: same.
	w, err := d.Writer(ctx, "b/data", nil)
	must(err)
	_, err = w.Write([]byte("tail"))
	must(err)
	st, err := w.State(ctx)
	must(err)
	writeAbandoned("b/data", st)
	w, err = d.Writer(ctx, "b/data", st)
	must(err)
	_, err = w.Write(part)
	must(err)
	must(w.Commit(ctx))

	// Abort of a resumed session with parts.
	w, err = d.Writer(ctx, "c/data", nil)
	must(err)
	_, err = w.Write(append(part, 'x'))
	must(err)
	st, err = w.State(ctx)
	must(err)
	w, err = d.Writer(ctx, "c/data", st)
	must(err)
	must(w.Abort(ctx))

	// A multipart Put whose body fails midway.
	err = d.Put(ctx, "e/data", io.MultiReader(bytes.NewReader(part), bytes.NewReader(part), failingReader{}), -1)
	if err == nil {
		t.Fatal("put with a failing body succeeded")
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := d.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket})
		must(err)
		if len(out.Uploads) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, u := range out.Uploads {
				t.Errorf("multipart upload left: %s %s", aws.ToString(u.Key), aws.ToString(u.UploadId))
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	objs, err := d.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket})
	must(err)
	var keys []string
	for _, o := range objs.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	if len(keys) != 1 || keys[0] != "b/data" {
		t.Errorf("bucket holds %v, want only b/data", keys)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrClosedPipe }

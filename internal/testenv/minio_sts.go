package testenv

import (
	"context"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// ReadOnlyCredentials returns temporary credentials (access key, secret key, session
// token) that may list bucket and read its objects but write nothing: an STS AssumeRole
// of the root user restricted by an inline session policy, which MinIO enforces as AWS
// does. Valid for an hour.
func (m *MinIO) ReadOnlyCredentials(t testing.TB, bucket string) (access, secret, token string) {
	t.Helper()
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[`+
		`{"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation","s3:ListBucketMultipartUploads"],"Resource":["arn:aws:s3:::%[1]s"]},`+
		`{"Effect":"Allow","Action":["s3:GetObject","s3:ListMultipartUploadParts"],"Resource":["arn:aws:s3:::%[1]s/*"]}]}`, bucket)
	form := url.Values{
		"Action":          {"AssumeRole"},
		"Version":         {"2011-06-15"},
		"DurationSeconds": {"3600"},
		"Policy":          {policy},
	}.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.Endpoint+"/", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	m.signV4(req, "sts", []byte(form))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("AssumeRole: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("AssumeRole: %s: %s", resp.Status, body)
	}
	var out struct {
		Result struct {
			Credentials struct {
				AccessKeyID     string `xml:"AccessKeyId"`
				SecretAccessKey string `xml:"SecretAccessKey"`
				SessionToken    string `xml:"SessionToken"`
			} `xml:"Credentials"`
		} `xml:"AssumeRoleResult"`
	}
	if err := xml.Unmarshal(body, &out); err != nil || out.Result.Credentials.AccessKeyID == "" {
		t.Fatalf("AssumeRole answer %s: %v", body, err)
	}
	c := out.Result.Credentials
	return c.AccessKeyID, c.SecretAccessKey, c.SessionToken
}

// signV4 signs req (no query string) for service with the root credentials, AWS
// Signature Version 4 over host, x-amz-content-sha256 and x-amz-date.
func (m *MinIO) signV4(req *http.Request, service string, body []byte) {
	now := time.Now().UTC()
	amzDate, day := now.Format("20060102T150405Z"), now.Format("20060102")
	payload := hex.EncodeToString(minioSHA256(body))
	req.Header.Set("x-amz-date", amzDate)
	req.Header.Set("x-amz-content-sha256", payload)
	const signed = "host;x-amz-content-sha256;x-amz-date"
	canonical := strings.Join([]string{
		req.Method, req.URL.EscapedPath(), "",
		"host:" + req.URL.Host, "x-amz-content-sha256:" + payload, "x-amz-date:" + amzDate, "",
		signed, payload,
	}, "\n")
	scope := day + "/" + m.Region + "/" + service + "/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(minioSHA256([]byte(canonical)))
	key := []byte("AWS4" + m.SecretKey)
	for _, s := range []string{day, m.Region, service, "aws4_request"} {
		key = minioHMAC(key, s)
	}
	req.Header.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		m.AccessKey, scope, signed, hex.EncodeToString(minioHMAC(key, toSign))))
}

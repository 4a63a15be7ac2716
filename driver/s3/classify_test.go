package s3

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/registryd/registryd/driver"
)

// opErr builds the error chain the SDK returns for an HTTP error response: an
// OperationError around an awshttp.ResponseError carrying the status, around the
// deserialized API error (nil for a response without one).
func opErr(status int, apiErr error) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      apiErr,
		},
		RequestID: "req-1",
	}}
}

func code(c string) error { return &smithy.GenericAPIError{Code: c, Message: "m"} }

// sendErr is what the SDK returns when the request never got an answer.
func sendErr(err error) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "HeadObject",
		Err: &smithyhttp.RequestSendError{Err: &url.Error{Op: "Get", URL: "http://x", Err: err}}}
}

func TestClassify(t *testing.T) {
	sentinels := []error{driver.ErrNotFound, driver.ErrThrottled, driver.ErrUnavailable, driver.ErrPermission,
		driver.ErrMisconfigured, driver.ErrPreconditionFailed}
	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"NoSuchKey", opErr(404, &types.NoSuchKey{}), driver.ErrNotFound},
		{"HEAD 404", opErr(404, &types.NotFound{}), driver.ErrNotFound},
		{"NoSuchUpload", opErr(404, &types.NoSuchUpload{}), driver.ErrNotFound},
		{"NoSuchBucket", opErr(404, &types.NoSuchBucket{}), driver.ErrMisconfigured},
		{"NoSuchBucket code", opErr(404, code("NoSuchBucket")), driver.ErrMisconfigured},
		{"404 unknown code", opErr(404, code("NoSuchWebsiteConfiguration")), driver.ErrMisconfigured},
		{"404 without body", opErr(404, nil), driver.ErrMisconfigured},
		{"wrong region", opErr(400, code("AuthorizationHeaderMalformed")), driver.ErrMisconfigured},
		{"redirect", opErr(301, code("PermanentRedirect")), driver.ErrMisconfigured},
		{"400 InvalidArgument", opErr(400, code("InvalidArgument")), driver.ErrMisconfigured},
		{"AccessDenied", opErr(403, code("AccessDenied")), driver.ErrPermission},
		{"InvalidAccessKeyId", opErr(403, code("InvalidAccessKeyId")), driver.ErrPermission},
		{"SignatureDoesNotMatch", opErr(403, code("SignatureDoesNotMatch")), driver.ErrPermission},
		{"HEAD 403", opErr(403, code("Forbidden")), driver.ErrPermission},
		{"403 without body", opErr(403, nil), driver.ErrPermission},
		{"401", opErr(401, nil), driver.ErrPermission},
		{"no credentials", &smithy.OperationError{Err: &v4.SigningError{Err: errors.New("failed to retrieve credentials")}}, driver.ErrPermission},
		{"SlowDown", opErr(503, code("SlowDown")), driver.ErrThrottled},
		{"SlowDown after retries", &smithy.OperationError{Err: &retry.MaxAttemptsError{Attempt: 3, Err: opErr(503, code("SlowDown"))}}, driver.ErrThrottled},
		{"429", opErr(429, nil), driver.ErrThrottled},
		{"503 without body", opErr(503, nil), driver.ErrThrottled},
		{"retry quota", &smithy.OperationError{Err: ratelimit.QuotaExceededError{Available: 0, Requested: 5}}, driver.ErrThrottled},
		{"InternalError", opErr(500, code("InternalError")), driver.ErrUnavailable},
		{"502", opErr(502, nil), driver.ErrUnavailable},
		{"408 without code", opErr(408, nil), driver.ErrUnavailable},
		{"405 unknown code", opErr(405, code("MethodNotAllowed")), driver.ErrMisconfigured},
		{"409 unknown code", opErr(409, code("BucketNotEmpty")), driver.ErrMisconfigured},
		{"504 unknown code", opErr(504, code("GatewayTimeout")), driver.ErrUnavailable},
		{"PreconditionFailed", opErr(412, code("PreconditionFailed")), driver.ErrPreconditionFailed},
		{"InvalidPart", opErr(400, code("InvalidPart")), driver.ErrPreconditionFailed},
		{"InvalidRange", opErr(416, code("InvalidRange")), driver.ErrPreconditionFailed},
		{"connection refused", sendErr(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), driver.ErrUnavailable},
		{"connection reset", sendErr(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), driver.ErrUnavailable},
		{"DNS", sendErr(&net.DNSError{Err: "no such host", Name: "s3.example", IsNotFound: true}), driver.ErrUnavailable},
		{"TLS", sendErr(x509.UnknownAuthorityError{}), driver.ErrUnavailable},
		{"response timeout", &smithy.OperationError{Err: &awshttp.ResponseTimeoutError{}}, driver.ErrUnavailable},
		{"unknown", errors.New("something else"), driver.ErrUnavailable},
		{"DeleteObjects entry", &objectError{key: "k", code: "AccessDenied"}, driver.ErrPermission},
	} {
		got := classify(c.err)
		if !errors.Is(got, c.want) {
			t.Errorf("%s: classify(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
		for _, s := range sentinels {
			if s != c.want && errors.Is(got, s) { //nolint:errorlint // which table sentinel, not an error check
				t.Errorf("%s: classified as %v too", c.name, s)
			}
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%s: the SDK error is not kept in the chain", c.name)
		}
	}

	// Context errors pass through, however the SDK wrapped them, and match no sentinel.
	for _, ctxErr := range []error{context.Canceled, context.DeadlineExceeded} {
		for _, err := range []error{
			ctxErr,
			&smithy.OperationError{Err: &smithy.CanceledError{Err: ctxErr}},
			sendErr(ctxErr),
		} {
			got := classify(err)
			if !errors.Is(got, ctxErr) {
				t.Errorf("classify(%v) = %v: lost %v", err, got, ctxErr)
			}
			for _, s := range sentinels {
				if errors.Is(got, s) {
					t.Errorf("classify(%v) = %v: matches %v", err, got, s)
				}
			}
		}
	}
	if classify(nil) != nil {
		t.Error("classify(nil) != nil")
	}
}

// TestFailPrefersContext: when the caller's context is done, the error reports it even
// if the SDK saw only a broken connection.
func TestFailPrefersContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := fail(ctx, "stat", "p", sendErr(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}))
	if !errors.Is(err, context.Canceled) || errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("fail with a cancelled ctx: %v", err)
	}
	var pe *driver.PathError
	if !errors.As(err, &pe) || pe.Op != "stat" || pe.Path != "p" {
		t.Errorf("fail: not a PathError naming the call: %#v", err)
	}
}

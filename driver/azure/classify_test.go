package azure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/registryd/registryd/driver"
)

func respErr(status int, code string) error {
	return &azcore.ResponseError{StatusCode: status, ErrorCode: code,
		RawResponse: &http.Response{StatusCode: status, Header: http.Header{}}}
}

func TestClassify(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "http://127.0.0.1:1/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	dns := &net.DNSError{Err: "no such host", Name: "acct.blob.core.windows.net", IsNotFound: true}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"BlobNotFound", respErr(404, "BlobNotFound"), driver.ErrNotFound},
		{"BlobNotFoundWrapped", fmt.Errorf("get: %w", respErr(404, "BlobNotFound")), driver.ErrNotFound},
		{"ContainerNotFound", respErr(404, "ContainerNotFound"), driver.ErrMisconfigured},
		{"ContainerBeingDeleted", respErr(409, "ContainerBeingDeleted"), driver.ErrMisconfigured},
		{"ResourceNotFound", respErr(404, "ResourceNotFound"), driver.ErrMisconfigured},
		{"404WithoutCode", respErr(404, ""), driver.ErrMisconfigured},
		{"AuthenticationFailed", respErr(403, "AuthenticationFailed"), driver.ErrPermission},
		{"AuthorizationFailure", respErr(403, "AuthorizationFailure"), driver.ErrPermission},
		{"AuthorizationPermissionMismatch", respErr(403, "AuthorizationPermissionMismatch"), driver.ErrPermission},
		{"InvalidAuthenticationInfo", respErr(401, "InvalidAuthenticationInfo"), driver.ErrPermission},
		{"403WithoutCode", respErr(403, ""), driver.ErrPermission},
		{"401WithoutCode", respErr(401, ""), driver.ErrPermission},
		{"ServerBusy", respErr(503, "ServerBusy"), driver.ErrThrottled},
		{"429", respErr(429, ""), driver.ErrThrottled},
		{"503", respErr(503, ""), driver.ErrThrottled},
		{"InternalError", respErr(500, "InternalError"), driver.ErrUnavailable},
		{"OperationTimedOut", respErr(500, "OperationTimedOut"), driver.ErrUnavailable},
		{"502", respErr(502, ""), driver.ErrUnavailable},
		{"400InvalidHeader", respErr(400, "InvalidHeaderValue"), driver.ErrMisconfigured},
		{"409BlobAlreadyExists", respErr(409, "BlobAlreadyExists"), driver.ErrPreconditionFailed},
		{"409Other", respErr(409, "LeaseIdMissing"), driver.ErrMisconfigured},
		{"408", respErr(408, ""), driver.ErrUnavailable},
		{"InvalidRange", respErr(416, "InvalidRange"), driver.ErrPreconditionFailed},
		{"ConditionNotMet", respErr(412, "ConditionNotMet"), driver.ErrPreconditionFailed},
		{"InvalidBlockList", respErr(400, "InvalidBlockList"), driver.ErrPreconditionFailed},
		{"ConnectionRefused", refused, driver.ErrUnavailable},
		{"DNS", dns, driver.ErrUnavailable},
		{"UnexpectedEOF", io.ErrUnexpectedEOF, driver.ErrUnavailable},
		{"AlreadyClassified", fmt.Errorf("x: %w", driver.ErrNotFound), driver.ErrNotFound},
	}
	sentinels := []error{driver.ErrNotFound, driver.ErrThrottled, driver.ErrUnavailable, driver.ErrPermission,
		driver.ErrMisconfigured, driver.ErrPreconditionFailed, driver.ErrUnsupported}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := classify(c.err)
			for _, s := range sentinels {
				if errors.Is(got, s) != (s == c.want) { //nolint:errorlint // which table sentinel, not an error check
					t.Errorf("classify(%v): errors.Is(%v) = %v", c.err, s, errors.Is(got, s))
				}
			}
			if !errors.Is(got, c.err) {
				t.Errorf("classify lost the cause %v", c.err)
			}
		})
	}
	if !errors.Is(classify(respErr(416, "InvalidRange")), errInvalidRange) {
		t.Error("InvalidRange does not carry errInvalidRange")
	}
	if classify(nil) != nil {
		t.Error("classify(nil) != nil")
	}
	for _, ctxErr := range []error{context.Canceled, context.DeadlineExceeded,
		&url.Error{Op: "Get", URL: "http://x/", Err: context.Canceled},
		fmt.Errorf("retry: %w", context.DeadlineExceeded)} {
		got := classify(ctxErr)
		if !errors.Is(got, ctxErr) {
			t.Errorf("classify(%v) = %v: context error lost", ctxErr, got)
		}
		for _, s := range sentinels {
			if errors.Is(got, s) {
				t.Errorf("classify(%v) wraps %v", ctxErr, s)
			}
		}
	}
}

// TestClassifyOneLine: a classified SDK response error reads as one line with the error
// code, status, request id and request path, never the query (a SAS signature).
func TestClassifyOneLine(t *testing.T) {
	req, _ := http.NewRequest(http.MethodPut, "https://acct.blob.core.windows.net/c/docker/x?sig=SECRETSIG&se=2026", nil)
	sdk := &azcore.ResponseError{StatusCode: 403, ErrorCode: "AuthenticationFailed", RawResponse: &http.Response{
		StatusCode: 403, Request: req, Header: http.Header{"X-Ms-Request-Id": {"0a1b2c3d-0001"}}}}
	if !strings.Contains(sdk.Error(), "\n") {
		t.Fatalf("the SDK message is expected to span lines: %q", sdk.Error())
	}
	err := classify(fmt.Errorf("put: %w", sdk))
	msg := err.Error()
	for _, want := range []string{"AuthenticationFailed", "HTTP 403", "request id 0a1b2c3d-0001", "PUT /c/docker/x"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.ContainsAny(msg, "\n\r") || strings.Contains(msg, "SECRETSIG") {
		t.Errorf("message %q", msg)
	}
	var re *azcore.ResponseError
	if !errors.Is(err, driver.ErrPermission) || !errors.As(err, &re) || re != sdk {
		t.Errorf("classification or chain lost: %v", err)
	}
}

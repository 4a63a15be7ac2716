package gcs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/storage"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"

	"github.com/registryd/registryd/driver"
)

var sentinels = []error{driver.ErrNotFound, driver.ErrThrottled, driver.ErrUnavailable, driver.ErrPermission,
	driver.ErrMisconfigured, driver.ErrPreconditionFailed, driver.ErrUnsupported, driver.ErrInvalidPath}

func apiErr(code int) *googleapi.Error {
	return &googleapi.Error{Code: code, Message: http.StatusText(code)}
}

func tokenErr(code int) error {
	// As the transport reports a refused token request: inside a *url.Error.
	return &url.Error{Op: "Get", URL: "https://storage.googleapis.com/x", Err: &auth.Error{
		Response: &http.Response{StatusCode: code}, Body: []byte(`{"error":"invalid_grant"}`)}}
}

func TestClassify(t *testing.T) {
	objectMissing := fmt.Errorf("%w: %w", storage.ErrObjectNotExist, apiErr(404))
	for _, c := range []struct {
		name string
		err  error
		// object is the class for object-level calls (classify), noObject for calls whose
		// 404 cannot mean a missing object (classifyNoObject).
		object, noObject error
	}{
		{"nil", nil, nil, nil},
		{"canceled", context.Canceled, context.Canceled, context.Canceled},
		{"deadline", context.DeadlineExceeded, context.DeadlineExceeded, context.DeadlineExceeded},
		{"canceled in url.Error", &url.Error{Op: "Get", URL: "u", Err: context.Canceled}, context.Canceled, context.Canceled},
		{"object not exist", storage.ErrObjectNotExist, driver.ErrNotFound, driver.ErrMisconfigured},
		{"object not exist with 404", objectMissing, driver.ErrNotFound, driver.ErrMisconfigured},
		{"bucket not exist", fmt.Errorf("%w: %w", storage.ErrBucketNotExist, apiErr(404)), driver.ErrMisconfigured, driver.ErrMisconfigured},
		{"bare 404 (upload to a missing bucket)", apiErr(404), driver.ErrMisconfigured, driver.ErrMisconfigured},
		{"400", apiErr(400), driver.ErrMisconfigured, driver.ErrMisconfigured},
		{"401", apiErr(401), driver.ErrPermission, driver.ErrPermission},
		{"403", apiErr(403), driver.ErrPermission, driver.ErrPermission},
		{"409", apiErr(409), driver.ErrPreconditionFailed, driver.ErrPreconditionFailed},
		{"412", apiErr(412), driver.ErrPreconditionFailed, driver.ErrPreconditionFailed},
		{"416", apiErr(416), driver.ErrPreconditionFailed, driver.ErrPreconditionFailed},
		{"429", apiErr(429), driver.ErrThrottled, driver.ErrThrottled},
		{"408", apiErr(408), driver.ErrUnavailable, driver.ErrUnavailable},
		{"405 (unrecognised 4xx)", apiErr(405), driver.ErrMisconfigured, driver.ErrMisconfigured},
		{"411 (unrecognised 4xx)", apiErr(411), driver.ErrMisconfigured, driver.ErrMisconfigured},
		{"500", apiErr(500), driver.ErrUnavailable, driver.ErrUnavailable},
		{"503", apiErr(503), driver.ErrUnavailable, driver.ErrUnavailable},
		{"wrapped 503", fmt.Errorf("storage: retry failed after 5 attempts; last error: %w", apiErr(503)), driver.ErrUnavailable, driver.ErrUnavailable},
		{"token refused (invalid_grant)", tokenErr(400), driver.ErrPermission, driver.ErrPermission},
		{"token unauthorized", tokenErr(401), driver.ErrPermission, driver.ErrPermission},
		{"token throttled", tokenErr(429), driver.ErrThrottled, driver.ErrThrottled},
		{"token endpoint down", tokenErr(503), driver.ErrUnavailable, driver.ErrUnavailable},
		{"oauth2 retrieve error", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 401}}, driver.ErrPermission, driver.ErrPermission},
		{"connection refused", &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, driver.ErrUnavailable, driver.ErrUnavailable},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, driver.ErrUnavailable, driver.ErrUnavailable},
		{"dns", &url.Error{Op: "Get", URL: "u", Err: &net.DNSError{Err: "no such host", Name: "storage.googleapis.com", IsNotFound: true}}, driver.ErrUnavailable, driver.ErrUnavailable},
		{"tls", &url.Error{Op: "Get", URL: "u", Err: x509.UnknownAuthorityError{}}, driver.ErrUnavailable, driver.ErrUnavailable},
		{"truncated body", io.ErrUnexpectedEOF, driver.ErrUnavailable, driver.ErrUnavailable},
		{"unknown", errors.New("storage: object checksum mismatch"), driver.ErrUnavailable, driver.ErrUnavailable},
		{"already classified", fmt.Errorf("%w: x", driver.ErrPreconditionFailed), driver.ErrPreconditionFailed, driver.ErrPreconditionFailed},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, v := range []struct {
				fn   func(error) error
				want error
			}{{classify, c.object}, {classifyNoObject, c.noObject}} {
				got := v.fn(c.err)
				if v.want == nil {
					if got != nil {
						t.Errorf("got %v, want nil", got)
					}
					continue
				}
				if !errors.Is(got, v.want) {
					t.Errorf("got %v, want %v", got, v.want)
				}
				n := 0
				for _, s := range sentinels {
					if errors.Is(got, s) {
						n++
					}
				}
				if isCtx := errors.Is(v.want, context.Canceled) || errors.Is(v.want, context.DeadlineExceeded); isCtx && n != 0 || !isCtx && n != 1 {
					t.Errorf("%v wraps %d sentinels", got, n)
				}
				if c.err != nil && !errors.Is(got, c.err) {
					t.Errorf("%v lost its cause", got)
				}
			}
		})
	}
	if got := classify(apiErr(416)); !errors.Is(got, errInvalidRange) {
		t.Errorf("416 does not mark errInvalidRange: %v", got)
	}
}

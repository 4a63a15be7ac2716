package gcs

import (
	"errors"
	"fmt"
	"net/http"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/storage"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/httpstatus"
)

// errInvalidRange marks a read whose start lies at or beyond the end of the object (HTTP
// 416). It is wrapped together with driver.ErrPreconditionFailed; Reader turns it into an
// empty stream, since callers guarantee that the offset is at most the size.
var errInvalidRange = errors.New("requested range not satisfiable")

// classify maps an error of an object-level call of the storage library (Attrs, reads,
// Delete, Copy, Compose: the calls the library reports a 404 of as
// storage.ErrObjectNotExist) onto the driver's sentinel errors. Together with
// classifyNoObject it is the only place that inspects the SDK's error types. The result
// wraps both the sentinel and err, so the cause stays visible in messages and to errors.As.
//
//   - nil stays nil; context errors pass through unchanged, as do errors already classified;
//   - storage.ErrObjectNotExist: ErrNotFound. GCS answers a missing bucket with the same
//     404, so callers that report ErrNotFound confirm the bucket first (Driver.notFound);
//   - storage.ErrBucketNotExist, any other 404, HTTP 400 (a malformed bucket name, a
//     requester-pays bucket without a billing project): ErrMisconfigured;
//   - HTTP 401 and 403, and a token endpoint refusing the credentials (for example
//     invalid_grant for a revoked key): ErrPermission;
//   - HTTP 429: ErrThrottled;
//   - HTTP 409 and 412 (a generation precondition failed): ErrPreconditionFailed; HTTP 416
//     also wraps errInvalidRange;
//   - any other HTTP status as on every backend (httpstatus.Class): 408 and 5xx are
//     ErrUnavailable, an unrecognised 4xx is ErrMisconfigured (never retried);
//   - no HTTP answer (refused connections, resets, timeouts, DNS, TLS, a truncated body, a
//     checksum mismatch): ErrUnavailable.
func classify(err error) error { return classifyCall(err, true) }

// classifyNoObject is classify for calls whose 404 cannot mean a missing object: uploads,
// listings. There any 404, even one the library
// reports as storage.ErrObjectNotExist, is a missing bucket: ErrMisconfigured.
func classifyNoObject(err error) error { return classifyCall(err, false) }

func classifyCall(err error, objectCall bool) error {
	if err == nil {
		return nil
	}
	if driver.Classified(err) {
		return err
	}
	switch {
	case errors.Is(err, storage.ErrBucketNotExist):
		return fmt.Errorf("%w: %w", driver.ErrMisconfigured, err)
	case errors.Is(err, storage.ErrObjectNotExist):
		if objectCall {
			return fmt.Errorf("%w: %w", driver.ErrNotFound, err)
		}
		return fmt.Errorf("%w: %w", driver.ErrMisconfigured, err)
	}
	// A token endpoint's answer comes first: the transport wraps it in a *url.Error.
	var ae *auth.Error
	if errors.As(err, &ae) && ae.Response != nil {
		return fmt.Errorf("%w: %w", tokenStatus(ae.Response.StatusCode), err)
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return fmt.Errorf("%w: %w", tokenStatus(re.Response.StatusCode), err)
	}
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		// No HTTP answer: the transport failed (refused, reset, timeout, DNS, TLS), the
		// body was cut short, or the credentials could not produce a token.
		return fmt.Errorf("%w: %w", driver.ErrUnavailable, err)
	}
	switch code := ge.Code; {
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		return fmt.Errorf("%w: %w", driver.ErrPermission, err)
	case code == http.StatusNotFound, code == http.StatusBadRequest:
		return fmt.Errorf("%w: %w", driver.ErrMisconfigured, err)
	case code == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %w", driver.ErrThrottled, err)
	case code == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%w: %w: %w", driver.ErrPreconditionFailed, errInvalidRange, err)
	case code == http.StatusPreconditionFailed, code == http.StatusConflict:
		return fmt.Errorf("%w: %w", driver.ErrPreconditionFailed, err)
	default:
		return fmt.Errorf("%w: %w", httpstatus.Class(code), err)
	}
}

// tokenStatus classifies the HTTP status of a refused token request.
func tokenStatus(code int) error {
	switch {
	case code == http.StatusTooManyRequests:
		return driver.ErrThrottled
	case code == http.StatusRequestTimeout, code >= 500:
		return driver.ErrUnavailable
	default:
		// 400 invalid_grant / invalid_client, 401, 403: the credentials are refused.
		return driver.ErrPermission
	}
}

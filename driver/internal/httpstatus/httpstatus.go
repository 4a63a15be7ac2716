// Package httpstatus classifies the HTTP status of an object store's error response that a
// driver did not recognise by the store's own error code, the same way on every backend.
// Who may import it: the drivers under driver/ (from their classify).
package httpstatus

import (
	"net/http"

	"github.com/registryd/registryd/driver"
)

// Class returns the driver sentinel for an error response with the given status, which
// the driver's classify could not place by a more precise signal (an error code):
//
//   - 401, 403: ErrPermission;
//   - 429: ErrThrottled;
//   - 412, 416: ErrPreconditionFailed;
//   - 408 and 5xx: ErrUnavailable (transient: driver.Retryable retries them);
//   - 404: ErrMisconfigured: without the store's "no such object" code it may come from
//     a proxy, a wrong endpoint or a missing bucket, and it is never ErrNotFound;
//   - any other 4xx: ErrMisconfigured. The store refused a well-formed request for good
//     (an unsupported header or argument, a conflict with the bucket's settings):
//     retrying the same request cannot succeed, so it must not be classed as transient;
//   - anything else (no error status at all): ErrUnavailable.
func Class(status int) error {
	switch {
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return driver.ErrPermission
	case status == http.StatusTooManyRequests:
		return driver.ErrThrottled
	case status == http.StatusPreconditionFailed, status == http.StatusRequestedRangeNotSatisfiable:
		return driver.ErrPreconditionFailed
	case status == http.StatusRequestTimeout, status >= 500:
		return driver.ErrUnavailable
	case status >= 400:
		return driver.ErrMisconfigured
	default:
		return driver.ErrUnavailable
	}
}

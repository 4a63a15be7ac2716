package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/httpstatus"
)

// codeClass maps an S3 error code (the <Code> of an error response, or the code the SDK
// derives for bodiless HEAD responses) to the driver's sentinel; ok is false for codes it
// does not know, which are classified by their HTTP status.
func codeClass(code string) (class error, ok bool) {
	switch code {
	// The object, upload or version does not exist. "NotFound" is what the SDK reports for
	// a bodiless 404 to HEAD; a HEAD answers 404 for a missing bucket too, so HeadObject
	// callers confirm the bucket before trusting it (see Driver.head).
	case "NoSuchKey", "NotFound", "NoSuchUpload", "NoSuchVersion":
		return driver.ErrNotFound, true
	// The configuration points at something that does not exist or cannot work.
	case "NoSuchBucket", "InvalidBucketName", "PermanentRedirect",
		"AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
		"KMS.NotFoundException", "NotImplemented":
		return driver.ErrMisconfigured, true
	// Our credentials were refused.
	case "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
		"ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AccountProblem",
		"AllAccessDisabled", "InvalidSecurity", "RequestTimeTooSkewed", "KMS.AccessDeniedException":
		return driver.ErrPermission, true
	// The backend asked us to slow down (after the SDK's retries).
	case "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
		"RequestThrottled", "TooManyRequests", "TooManyRequestsException", "ServiceUnavailable",
		"KMS.ThrottlingException", "XMinioServerNotInitialized":
		return driver.ErrThrottled, true
	// A write's precondition does not hold (a conditional request, a part list that no
	// longer matches the upload, a range past the end of the object).
	case "PreconditionFailed", "ConditionalRequestConflict", "InvalidPart", "InvalidPartOrder",
		"InvalidRange":
		return driver.ErrPreconditionFailed, true
	// The backend failed or timed out.
	case "InternalError", "RequestTimeout":
		return driver.ErrUnavailable, true
	}
	return nil, false
}

// classify maps an error returned by the AWS SDK onto exactly one of the driver's
// sentinels and returns an error wrapping both the sentinel and err (so the SDK's message
// stays in logs). Context errors are passed through unchanged, so errors.Is(err,
// context.Canceled) keeps working. It is the only place SDK error types are inspected.
//
// The order matters: an S3 error code is the most precise answer; then the HTTP status;
// then transport failures (refused, reset, timeout, DNS, TLS: ErrUnavailable). An error
// the SDK produced without reaching S3 and that is none of these is ErrUnavailable.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if class, ok := codeClass(apiErr.ErrorCode()); ok {
			return wrap(class, err)
		}
	}
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		return wrap(statusClass(respErr.HTTPStatusCode()), err)
	}
	var quota ratelimit.QuotaExceededError
	if errors.As(err, &quota) {
		return wrap(driver.ErrThrottled, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return wrap(driver.ErrUnavailable, err)
	}
	var signErr *v4.SigningError
	if errors.As(err, &signErr) {
		// No usable credentials could be obtained (the default chain found none, or a
		// credential source refused us). Transport failures of the credential source were
		// caught as net.Error above.
		return wrap(driver.ErrPermission, err)
	}
	return wrap(driver.ErrUnavailable, err)
}

// statusClass classifies an HTTP status of an error response whose code is not in
// codeClass: a 503 is S3 asking us to slow down; the rest is classified as on every
// backend (httpstatus.Class: an unrecognised 4xx is ErrMisconfigured, never retried).
func statusClass(status int) error {
	if status == http.StatusServiceUnavailable {
		return driver.ErrThrottled
	}
	return httpstatus.Class(status)
}

// wrap returns an error that matches both class and cause with errors.Is and prints as
// "class: cause".
func wrap(class, cause error) error {
	return fmt.Errorf("%w: %w", class, cause)
}

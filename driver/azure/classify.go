package azure

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/internal/httpstatus"
)

// errInvalidRange marks a read whose start lies at or beyond the end of the blob (HTTP 416
// InvalidRange). It is wrapped together with driver.ErrPreconditionFailed; Reader turns it
// into an empty stream when the offset equals the size.
var errInvalidRange = errors.New("requested range not satisfiable")

// classify maps an error of the Azure SDK (or of the HTTP transport below it) onto the
// driver's sentinel errors. It is the only place that inspects SDK error types. The result
// wraps both the sentinel and err, so the cause stays visible in messages and to errors.As.
//
//   - nil stays nil; context errors pass through unchanged, as do errors already classified;
//   - BlobNotFound: ErrNotFound (the only path to it: a missing container, a 404 without a
//     blob error code, a missing account are never ErrNotFound);
//   - ContainerNotFound, a disabled or deleted container or account, a malformed name or
//     URL, any other 404: ErrMisconfigured;
//   - authentication and authorization failures, 401, 403: ErrPermission;
//   - ServerBusy, 429, 503: ErrThrottled;
//   - ConditionNotMet, 412, InvalidBlockList (the session's blocks are gone), InvalidRange,
//     BlobAlreadyExists (409 to a write with If-None-Match: *): ErrPreconditionFailed;
//   - any other HTTP status as on every backend (httpstatus.Class): 408 and 5xx are
//     ErrUnavailable, an unrecognised 4xx is ErrMisconfigured (never retried);
//   - no HTTP answer (refused connections, resets, timeouts, DNS, TLS): ErrUnavailable.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if driver.Classified(err) {
		return err
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		// No HTTP answer at all: the transport failed (refused, reset, timeout, DNS, TLS)
		// or the credential chain could not produce a token.
		return fmt.Errorf("%w: %w", driver.ErrUnavailable, err)
	}
	err = &responseError{err: err, re: re} // one line in logs, with the code and request id
	switch {
	case bloberror.HasCode(err, bloberror.BlobNotFound):
		return fmt.Errorf("%w: %w", driver.ErrNotFound, err)
	case bloberror.HasCode(err, bloberror.ContainerNotFound, bloberror.ContainerBeingDeleted,
		bloberror.ContainerDisabled, bloberror.AccountIsDisabled, bloberror.ResourceNotFound,
		bloberror.InvalidResourceName, bloberror.InvalidURI, bloberror.RequestURLFailedToParse):
		return fmt.Errorf("%w: %w", driver.ErrMisconfigured, err)
	case bloberror.HasCode(err, bloberror.AuthenticationFailed, bloberror.AuthorizationFailure,
		bloberror.AuthorizationPermissionMismatch, bloberror.AuthorizationProtocolMismatch,
		bloberror.AuthorizationResourceTypeMismatch, bloberror.AuthorizationServiceMismatch,
		bloberror.AuthorizationSourceIPMismatch, bloberror.InsufficientAccountPermissions,
		bloberror.InvalidAuthenticationInfo, bloberror.NoAuthenticationInformation),
		re.StatusCode == http.StatusUnauthorized, re.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %w", driver.ErrPermission, err)
	case bloberror.HasCode(err, bloberror.ServerBusy),
		re.StatusCode == http.StatusTooManyRequests, re.StatusCode == http.StatusServiceUnavailable:
		return fmt.Errorf("%w: %w", driver.ErrThrottled, err)
	case bloberror.HasCode(err, bloberror.InvalidRange),
		re.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%w: %w: %w", driver.ErrPreconditionFailed, errInvalidRange, err)
	case bloberror.HasCode(err, bloberror.ConditionNotMet, bloberror.TargetConditionNotMet,
		bloberror.InvalidBlockList, bloberror.BlobAlreadyExists), re.StatusCode == http.StatusPreconditionFailed:
		return fmt.Errorf("%w: %w", driver.ErrPreconditionFailed, err)
	case re.StatusCode == http.StatusNotFound:
		// A 404 without BlobNotFound: a wrong account, path or proxy. Not a missing object.
		return fmt.Errorf("%w: %w", driver.ErrMisconfigured, err)
	default:
		return fmt.Errorf("%w: %w", httpstatus.Class(re.StatusCode), err)
	}
}

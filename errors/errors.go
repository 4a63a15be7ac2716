// Package errors declares the OCI distribution error codes once, each with its HTTP status,
// and holds ToHTTP, the only function that turns an error into an HTTP status and body.
//
// Who may import it: storage (which returns *Error values for registry conditions, wrapping
// their cause), handlers and cmd/registryd. It imports nothing of registryd: an error that is
// not an *Error (a backend failure, a cancelled request, a bug) is a 500 UNKNOWN whose cause
// is never shown to the client.
package errors

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Descriptor is one OCI error condition: its wire code, a default message and the HTTP
// status it is sent with. Several descriptors may share a code with different statuses.
type Descriptor struct {
	Code    string
	Message string
	Status  int
}

// The descriptor table. Codes are those of the OCI distribution spec, plus Distribution's
// TAG_INVALID, RANGE_INVALID and PAGINATION_NUMBER_INVALID.
var (
	BlobUnknown             = Descriptor{"BLOB_UNKNOWN", "blob unknown to registry", http.StatusNotFound}
	BlobUploadInvalid       = Descriptor{"BLOB_UPLOAD_INVALID", "blob upload invalid", http.StatusBadRequest}
	BlobUploadOutOfOrder    = Descriptor{"BLOB_UPLOAD_INVALID", "chunk does not start at the upload's current offset", http.StatusRequestedRangeNotSatisfiable}
	BlobUploadUnknown       = Descriptor{"BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", http.StatusNotFound}
	DigestInvalid           = Descriptor{"DIGEST_INVALID", "provided digest did not match uploaded content", http.StatusBadRequest}
	ManifestBlobUnknown     = Descriptor{"MANIFEST_BLOB_UNKNOWN", "manifest references a blob unknown to the repository", http.StatusBadRequest}
	ManifestChildUnknown    = Descriptor{"MANIFEST_UNKNOWN", "index references a manifest unknown to the repository", http.StatusBadRequest}
	ManifestInvalid         = Descriptor{"MANIFEST_INVALID", "manifest invalid", http.StatusBadRequest}
	ManifestTooLarge        = Descriptor{"SIZE_INVALID", "manifest exceeds the size limit", http.StatusRequestEntityTooLarge}
	ManifestUnknown         = Descriptor{"MANIFEST_UNKNOWN", "manifest unknown to registry", http.StatusNotFound}
	NameInvalid             = Descriptor{"NAME_INVALID", "invalid repository name", http.StatusBadRequest}
	NameUnknown             = Descriptor{"NAME_UNKNOWN", "repository name not known to registry", http.StatusNotFound}
	SizeInvalid             = Descriptor{"SIZE_INVALID", "provided length did not match content length", http.StatusBadRequest}
	TagInvalid              = Descriptor{"TAG_INVALID", "invalid tag", http.StatusBadRequest}
	RangeInvalid            = Descriptor{"RANGE_INVALID", "requested range not satisfiable", http.StatusRequestedRangeNotSatisfiable}
	PaginationNumberInvalid = Descriptor{"PAGINATION_NUMBER_INVALID", "invalid number of results requested", http.StatusBadRequest}
	Unauthorized            = Descriptor{"UNAUTHORIZED", "authentication required", http.StatusUnauthorized}
	Denied                  = Descriptor{"DENIED", "requested access to the resource is denied", http.StatusForbidden}
	Unsupported             = Descriptor{"UNSUPPORTED", "the operation is unsupported", http.StatusMethodNotAllowed}
	TooManyRequests         = Descriptor{"TOOMANYREQUESTS", "too many requests", http.StatusTooManyRequests}
	Unknown                 = Descriptor{"UNKNOWN", "internal server error", http.StatusInternalServerError}
	Unavailable             = Descriptor{"UNAVAILABLE", "service unavailable", http.StatusServiceUnavailable}
)

// Error is a registry error as sent to clients: a descriptor, an optional detail shown to
// the client, optional response headers, and an optional internal cause (logged, never sent).
type Error struct {
	Descriptor
	Message string
	Detail  any
	Header  http.Header
	cause   error
}

// New returns an Error for d with d's default message.
func New(d Descriptor) *Error { return &Error{Descriptor: d, Message: d.Message} }

// WithDetail returns d as an Error carrying detail (JSON-encoded into the envelope).
func (d Descriptor) WithDetail(detail any) *Error {
	e := New(d)
	e.Detail = detail
	return e
}

// WithMessage returns d as an Error with a specific message.
func (d Descriptor) WithMessage(format string, args ...any) *Error {
	e := New(d)
	e.Message = fmt.Sprintf(format, args...)
	return e
}

// WithCause sets the internal cause (kept for errors.Is/As and logs) and returns e.
func (e *Error) WithCause(err error) *Error {
	e.cause = err
	return e
}

// WithHeader adds a response header and returns e.
func (e *Error) WithHeader(k, v string) *Error {
	if e.Header == nil {
		e.Header = http.Header{}
	}
	e.Header.Add(k, v)
	return e
}

// Error implements error.
func (e *Error) Error() string {
	s := e.Code + ": " + e.Message
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.cause }

// StatusCode returns the HTTP status of the error.
func (e *Error) StatusCode() int { return e.Status }

// Is reports whether target is an *Error with the same code and status, so callers can
// test errors.Is(err, errors.New(errors.BlobUnknown)).
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Descriptor == e.Descriptor
}

// Of reports whether err is (or wraps) an *Error of descriptor d.
func Of(err error, d Descriptor) bool {
	var e *Error
	return errors.As(err, &e) && e.Descriptor == d
}

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail"`
}

// Envelope is the JSON body of an error response: {"errors":[{"code","message","detail"}]}.
type Envelope struct {
	Errors []wireError `json:"errors"`
}

// ToHTTP maps err to the status, headers and JSON body to send. An *Error anywhere in the
// chain is sent as itself; anything else is a 500 UNKNOWN with a generic message (the cause
// stays in the logs). internal reports whether the cause must be logged as a server fault.
func ToHTTP(err error) (status int, header http.Header, body []byte, internal bool) {
	var e *Error
	if !errors.As(err, &e) {
		e = New(Unknown)
		internal = true
	}
	detail := e.Detail
	if detail == nil {
		detail = map[string]any{}
	}
	body, merr := json.Marshal(Envelope{Errors: []wireError{{Code: e.Code, Message: e.Message, Detail: detail}}})
	if merr != nil {
		body = []byte(`{"errors":[{"code":"UNKNOWN","message":"internal server error","detail":{}}]}`)
	}
	return e.Status, e.Header, body, internal || e.Status >= 500
}

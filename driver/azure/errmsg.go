package azure

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// responseError gives an Azure SDK error that carries an *azcore.ResponseError a one-line
// message: the service's error code, the HTTP status, the request's method and path (never
// its query, which may hold a SAS signature) and the x-ms-request-id to quote to Azure
// support. The SDK's own message is a multi-line dump of the response. It unwraps to the
// original error, so errors.As and bloberror.HasCode see through it.
type responseError struct {
	err error
	re  *azcore.ResponseError
}

func (e *responseError) Error() string {
	var b strings.Builder
	b.WriteString("azure: ")
	if e.re.ErrorCode != "" {
		b.WriteString(e.re.ErrorCode)
	} else {
		b.WriteString(http.StatusText(e.re.StatusCode))
	}
	b.WriteString(" (HTTP " + strconv.Itoa(e.re.StatusCode))
	if resp := e.re.RawResponse; resp != nil {
		if id := resp.Header.Get("x-ms-request-id"); id != "" {
			b.WriteString(", request id " + id)
		}
		if req := resp.Request; req != nil && req.URL != nil {
			b.WriteString(", " + req.Method + " " + req.URL.Path)
		}
	}
	b.WriteString(")")
	return b.String()
}

func (e *responseError) Unwrap() error { return e.err }

// Package auth decides who may do what: it authenticates a request (HTTP Basic against an
// htpasswd file, or a bearer token of the Docker token specification), checks the scopes
// the request needs against the caller's identity, token grants and access rules, and
// answers with the OCI error a client understands: 401 UNAUTHORIZED with the
// WWW-Authenticate challenge naming the exact scope, or 403 DENIED.
//
// Who may import it: handlers (through the Authorizer interface), cmd/registryd (which
// builds a Controller from the configuration) and tests. It imports errors, never storage
// or a driver: storage only ever sees an identity as an opaque string.
package auth

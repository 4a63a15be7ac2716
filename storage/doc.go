// Package storage gives registry meaning to the objects of a driver.Driver: blobs,
// resumable uploads with signed stateless state, manifests, tags, referrers and the
// catalog, in the CNCF Distribution v2 layout (see paths.go), so a bucket written by
// Distribution is served in place and the reverse.
//
// Errors: every condition a client can act on is returned as an *errors.Error (404 only when
// the backend positively reported the object missing); any other driver failure is returned
// wrapped with context and becomes a 500 in the one HTTP error mapping.
//
// Who may import it: handlers and cmd/registryd. It imports driver, never Echo or a
// concrete driver.
package storage

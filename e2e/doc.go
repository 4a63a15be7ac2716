// Package e2e holds the end-to-end tests: registryd started as a process on each backend,
// driven by real clients (go-containerregistry, the Docker engine, skopeo) and by the
// upstream OCI distribution-spec conformance suite.
package e2e

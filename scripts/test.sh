#!/usr/bin/env bash
# The whole test suite: installs the pinned tools the tests need (idempotent, cached under
# $REGISTRYD_TOOLS), checks formatting, vet and the linters of .golangci.yml (golangci-lint,
# pinned by install-tools.sh, its cache under $REGISTRYD_TOOLS), then runs every Go test,
# including the driver suites against real emulators, the OCI conformance suite on every
# backend, and the real-client end-to-end tests. Extra arguments go to `go test` (e.g. -run Conformance).
set -euo pipefail
cd "$(dirname "$0")/.."

export REGISTRYD_TOOLS=${REGISTRYD_TOOLS:-$HOME/.cache/registryd-tools}
export GOTOOLCHAIN=local GOFLAGS=${GOFLAGS:--buildvcs=false}

scripts/install-tools.sh

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [[ -n $unformatted ]]; then
  echo "gofmt needed on:" >&2; echo "$unformatted" >&2; exit 1
fi
go vet ./...
GOLANGCI_LINT_CACHE=${GOLANGCI_LINT_CACHE:-$REGISTRYD_TOOLS/golangci-lint-cache} \
  "$REGISTRYD_TOOLS/bin/golangci-lint" run ./...

pkgs=${TEST_PACKAGES:-./...}
go test -count=1 -timeout 28m "$@" $pkgs

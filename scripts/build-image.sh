#!/usr/bin/env bash
# Builds registryd's release image without a Docker daemon: a static, stripped binary with the
# version stamped in (CGO_ENABLED=0, -trimpath -ldflags "-s -w -X main.version=..."), then
# internal/release/cmd/build-image puts it on a scratch base (nonroot user 65532, /tmp, CA
# certificates) and writes dist/registryd-image.tar (`docker load -i` it) and an OCI layout,
# and pushes it when asked.
#   scripts/build-image.sh                         # dist/registryd, dist/registryd-image.tar, dist/oci
#   VERSION=1.2.3 scripts/build-image.sh -push registry.example.com/registryd:1.2.3
#   scripts/build-image.sh -insecure -push 127.0.0.1:5000/registryd:dev
# Extra arguments go to build-image. The image digest is printed on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || true)}
OUT=${OUT:-dist}
GOARCH=${GOARCH:-$(go env GOARCH)}
mkdir -p "$OUT"
CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH go build -trimpath -buildvcs=auto \
  -ldflags "-s -w -X main.version=$VERSION" -o "$OUT/registryd" ./cmd/registryd
rm -rf "$OUT/oci"
go run ./internal/release/cmd/build-image -binary "$OUT/registryd" -version "$VERSION" \
  -revision "$REVISION" -arch "$GOARCH" -tarball "$OUT/registryd-image.tar" -oci-layout "$OUT/oci" "$@"

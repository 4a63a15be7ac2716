#!/usr/bin/env bash
# Installs, idempotently and at pinned versions, every tool the test suite needs, under
# $REGISTRYD_TOOLS (default ~/.cache/registryd-tools): MinIO, fake-gcs-server, Azurite, the OCI
# conformance suite, CNCF Distribution (layout compatibility), the oras, regctl, helm and crane CLIs,
# and the Debian packages for the real-client tests (docker.io, skopeo). A tool already present at its pinned version is not
# rebuilt. Usage: scripts/install-tools.sh [tool...]   (default: all)
set -euo pipefail

TOOLS=${REGISTRYD_TOOLS:-$HOME/.cache/registryd-tools}
BIN=$TOOLS/bin
STAMPS=$TOOLS/stamps
mkdir -p "$BIN" "$STAMPS"

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
FAKEGCS_VERSION=v1.56.1
AZURITE_VERSION=3.37.0
CONFORMANCE_VERSION=v0.0.0-20260831232431-97274622c111
CONFORMANCE_BUILD=2  # bump when the build recipe changes
DISTRIBUTION_VERSION=v3.1.2
ORAS_VERSION=v1.3.6
REGCTL_VERSION=v0.11.7
HELM_VERSION=v3.22.0
CRANE_VERSION=v0.22.1

log() { printf '[install-tools] %s\n' "$*" >&2; }

# go_tool NAME MODULE/PATH@VERSION: go install into $BIN unless the stamp says it is there.
go_tool() {
  local name=$1 pkg=$2 stamp="$STAMPS/$1-${2##*@}"
  if [[ -f $stamp && -x $BIN/$name ]]; then return 0; fi
  log "building $pkg"
  GOBIN="$BIN" GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "$pkg"
  touch "$stamp"
}

install_minio() { go_tool minio "github.com/minio/minio@$MINIO_VERSION"; }
install_fakegcs() { go_tool fake-gcs-server "github.com/fsouza/fake-gcs-server@$FAKEGCS_VERSION"; }
install_oras() { go_tool oras "oras.land/oras/cmd/oras@$ORAS_VERSION"; }
install_regctl() { go_tool regctl "github.com/regclient/regclient/cmd/regctl@$REGCTL_VERSION"; }
install_crane() { go_tool crane "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"; }
install_helm() { go_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; }
install_distribution() { go_tool registry "github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION"; }

install_azurite() {
  local stamp="$STAMPS/azurite-$AZURITE_VERSION"
  if [[ -f $stamp && -x $TOOLS/azurite/node_modules/.bin/azurite-blob ]]; then return 0; fi
  log "installing azurite@$AZURITE_VERSION"
  mkdir -p "$TOOLS/azurite"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/azurite" "azurite@$AZURITE_VERSION" >&2
  ln -sf "$TOOLS/azurite/node_modules/.bin/azurite-blob" "$BIN/azurite-blob"
  touch "$stamp"
}

install_conformance() {
  local stamp="$STAMPS/conformance-$CONFORMANCE_VERSION-$CONFORMANCE_BUILD"
  if [[ -f $stamp && -x $BIN/oci-conformance ]]; then return 0; fi
  log "building OCI conformance suite $CONFORMANCE_VERSION"
  local mod=github.com/opencontainers/distribution-spec/conformance
  local dir
  dir=$(GOFLAGS=-mod=mod go mod download -json "$mod@$CONFORMANCE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  rm -rf "$TOOLS/conformance-src"
  cp -r "$dir" "$TOOLS/conformance-src"
  chmod -R u+w "$TOOLS/conformance-src"
  (cd "$TOOLS/conformance-src" && GOFLAGS=-buildvcs=false go build -o "$BIN/oci-conformance" \
    -ldflags "-X main.Version=$CONFORMANCE_VERSION" . >&2)
  touch "$stamp"
}

install_debian() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v skopeo >/dev/null || missing+=(skopeo)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

all=(debian azurite conformance fakegcs minio distribution oras regctl helm crane)
want=("$@")
[[ ${#want[@]} -eq 0 ]] && want=("${all[@]}")
for t in "${want[@]}"; do "install_$t"; done
log "tools ready in $BIN"

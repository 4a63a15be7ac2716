#!/usr/bin/env bash
# Installs, idempotently and at pinned versions, every tool the test suite needs, under
# $REGISTRYD_TOOLS (default ~/.cache/registryd-tools): MinIO, fake-gcs-server, Azurite, the OCI
# conformance suite, CNCF Distribution (layout compatibility), the oras, regctl, helm and crane CLIs, golangci-lint (the linters scripts/test.sh runs),
# kubeconform with Kubernetes schemas converted offline, kube-apiserver built from source, and the
# Debian packages for the real-client tests (docker.io, skopeo, etcd-server). A tool already present at its pinned version is not
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
KUBECONFORM_VERSION=v0.8.0
KUBE_OPENAPI_VERSION=v0.0.0-20250910181357-589584f1c912  # its testdata holds the OpenAPI v2 document
K8S_SCHEMAS_BUILD=1   # bump when the schema conversion changes
KUBERNETES_VERSION=v1.36.3
GOLANGCI_LINT_VERSION=v2.15.0

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

install_golangcilint() { go_tool golangci-lint "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"; }

install_kubeconform() { go_tool kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"; }

# Kubernetes JSON schemas for kubeconform, offline: the OpenAPI v2 document that kube-openapi ships
# as test data, split by internal/k8sschemas into kubeconform's {{.ResourceKind}}{{.KindSuffix}}.json
# layout under $TOOLS/k8s-schemas (kubeconform -schema-location "$TOOLS/k8s-schemas/{{.ResourceKind}}{{.KindSuffix}}.json").
install_k8sschemas() {
  local stamp="$STAMPS/k8s-schemas-$KUBE_OPENAPI_VERSION-$K8S_SCHEMAS_BUILD"
  if [[ -f $stamp && -d $TOOLS/k8s-schemas ]]; then return 0; fi
  log "converting the Kubernetes OpenAPI document from k8s.io/kube-openapi@$KUBE_OPENAPI_VERSION"
  local dir
  dir=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kube-openapi@$KUBE_OPENAPI_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  rm -rf "$TOOLS/k8s-schemas"
  (cd "$(dirname "$0")/.." && go run ./internal/k8sschemas/cmd/k8s-schemas "$dir/pkg/schemaconv/testdata/swagger.json" "$TOOLS/k8s-schemas")
  touch "$stamp"
}

# A real Kubernetes API server (no kubelet, no controllers), built from the k8s.io/kubernetes module in
# a throwaway module that replaces its staging modules by the published k8s.io/<name> releases.
# About 7 minutes and 150 MB on 2 cores; cached by its stamp.
install_kubeapiserver() {
  local stamp="$STAMPS/kube-apiserver-$KUBERNETES_VERSION"
  if [[ -f $stamp && -x $BIN/kube-apiserver ]]; then return 0; fi
  log "building kube-apiserver $KUBERNETES_VERSION"
  local src=$TOOLS/kube-apiserver-src staging_ver=v0${KUBERNETES_VERSION#v1}
  rm -rf "$src" && mkdir -p "$src"
  local gomod
  gomod=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  {
    printf 'module registryd.local/kubeapiserver\n\ngo %s\n\nrequire k8s.io/kubernetes %s\n\n' "$(go env GOVERSION | sed 's/^go//')" "$KUBERNETES_VERSION"
    grep '=> ./staging' "$gomod" | awk -v v="$staging_ver" '{print "replace " $1 " => " $1 " " v}'
  } >"$src/go.mod"
  (cd "$src" && GOFLAGS=-mod=mod go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" >&2 &&
    GOFLAGS=-mod=mod go mod tidy >&2 &&
    GOFLAGS=-buildvcs=false CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2)
  touch "$stamp"
}

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
  command -v etcd >/dev/null || [[ -x /usr/bin/etcd ]] || missing+=(etcd-server)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

all=(debian azurite conformance fakegcs minio distribution oras regctl helm crane golangcilint kubeconform k8sschemas kubeapiserver)
want=("$@")
[[ ${#want[@]} -eq 0 ]] && want=("${all[@]}")

# The installers are independent: on a fresh machine they run side by side (at most
# $INSTALL_JOBS at once), so module downloads and apt overlap the compiles. Each one's output
# goes to $TOOLS/logs/<tool>.log and is printed if it fails; a tool already installed costs
# nothing. Any failure fails the script once all have finished.
jobs_max=${INSTALL_JOBS:-4}
mkdir -p "$TOOLS/logs"
declare -A pid_of=()
for t in "${want[@]}"; do
  while (( $(jobs -rp | wc -l) >= jobs_max )); do wait -n || true; done
  ( "install_$t" ) >"$TOOLS/logs/$t.log" 2>&1 &
  pid_of[$t]=$!
done
failed=()
for t in "${want[@]}"; do
  if ! wait "${pid_of[$t]}"; then
    failed+=("$t")
    log "installing $t failed:"; tail -n 40 "$TOOLS/logs/$t.log" >&2
  fi
done
if (( ${#failed[@]} > 0 )); then
  log "failed: ${failed[*]}"
  exit 1
fi
log "tools ready in $BIN"

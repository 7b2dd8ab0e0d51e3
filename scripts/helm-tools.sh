#!/usr/bin/env bash
# The tools that check the Helm chart (tests/system/deploy/test_helm.py): helm and
# kubectl-validate, built from their Go modules (only the Go module proxy is needed) once per
# version into ${XDG_CACHE_HOME:-~/.cache}/kchat/, like scripts/minio.sh does for MinIO; and
# the Prometheus Operator's CRDs of ServiceMonitor and PrometheusRule, which kubectl-validate
# has no built-in schema for, taken from the operator's Go module of the same proxy.
#
#   scripts/helm-tools.sh install    build and fetch what is missing (minutes the first time)
#   scripts/helm-tools.sh paths      install, then print HELM=, KUBECTL_VALIDATE=, CRDS= (a
#                                    folder for --local-crds) and KUBE_VERSIONS= (the two
#                                    newest Kubernetes versions kubectl-validate knows offline)
#
# Nothing here is committed: the binaries live in the user's cache, one folder per version.
set -euo pipefail

HELM_MODULE=helm.sh/helm/v4
HELM_VERSION=v4.3.2
KV_MODULE=sigs.k8s.io/kubectl-validate
KV_VERSION=v0.0.4
# The newest two of the schema sets built into kubectl-validate v0.0.4 (1.23 .. 1.30): it
# validates offline against these only.
KUBE_VERSIONS="1.29 1.30"
PO_MODULE=github.com/prometheus-operator/prometheus-operator
PO_VERSION=v0.85.0
TOOLS=${KCHAT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kchat}
HELM=$TOOLS/helm-$HELM_VERSION/helm
KUBECTL_VALIDATE=$TOOLS/kubectl-validate-$KV_VERSION/kubectl-validate
CRDS=$TOOLS/prometheus-operator-crds-$PO_VERSION

build() { # binary module/package@version
    local bin=$1 pkg=$2
    [[ -x $bin ]] && return 0
    command -v go >/dev/null || {
        echo "helm-tools.sh: go not found: it builds $pkg (apt-get install golang, or Go from go.dev)" >&2
        exit 1
    }
    echo "helm-tools: building $pkg (once per machine)" >&2
    mkdir -p "$(dirname "$bin")"
    # A folder of its own per version: a half-built binary never stands in for a good one.
    GOBIN=$(dirname "$bin") GOFLAGS=-mod=mod CGO_ENABLED=0 go install "$pkg"
    [[ -x $bin ]] || { echo "helm-tools.sh: the build left no binary at $bin" >&2; exit 1; }
}

crds() {
    [[ -s $CRDS/monitoring.coreos.com_prometheusrules.yaml ]] && return 0
    command -v go >/dev/null || { echo "helm-tools.sh: go not found: it fetches $PO_MODULE" >&2; exit 1; }
    local dir tmp
    mkdir -p "$TOOLS"
    # Outside any module (the download must not touch a go.mod of the working directory).
    dir=$(cd "$TOOLS" && GOFLAGS=-mod=mod go mod download -json "$PO_MODULE@$PO_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    [[ -d $dir/example/prometheus-operator-crd ]] || {
        echo "helm-tools.sh: $PO_MODULE@$PO_VERSION has no example/prometheus-operator-crd" >&2; exit 1; }
    tmp=$CRDS.tmp.$$
    mkdir -p "$tmp"
    for kind in servicemonitors prometheusrules; do
        cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$tmp/"
    done
    chmod u+w "$tmp"/*
    rm -rf "$CRDS" && mv "$tmp" "$CRDS"
}

install() {
    build "$HELM" "$HELM_MODULE/cmd/helm@$HELM_VERSION"
    build "$KUBECTL_VALIDATE" "$KV_MODULE@$KV_VERSION"
    crds
}

case ${1:-install} in
    install) install ;;
    paths) install; printf 'HELM=%s\nKUBECTL_VALIDATE=%s\nCRDS=%s\nKUBE_VERSIONS=%s\n' \
        "$HELM" "$KUBECTL_VALIDATE" "$CRDS" "$KUBE_VERSIONS" ;;
    *) echo "usage: $0 install|paths" >&2; exit 2 ;;
esac

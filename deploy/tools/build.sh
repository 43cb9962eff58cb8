#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests start (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok) from the Go module proxy, once, into
# ~/.cache/es-serverless/tools/<name>-<version>/. Usage: build.sh [etcd|kubernetes|kwok]...
set -euo pipefail

ETCD_VERSION=v3.6.16
KUBE_VERSION=v1.34.4
KWOK_VERSION=v0.8.0
TOOLS_DIR=${ESS_TOOLS_DIR:-$HOME/.cache/es-serverless/tools}
RECIPES=$(cd "$(dirname "$0")" && pwd)

GO=$(command -v go || true)
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
need_go() {
  [ -n "$GO" ] && return 0
  echo "$1: Go 1.26+ is needed to build it from the Go module proxy (https://go.dev/dl)" >&2
  exit 2
}
# a shared machine: build at the lowest priority, on at most two cores
go_build() { GOMAXPROCS=${GOMAXPROCS:-2} GOFLAGS=-buildvcs=false nice -n 19 "$GO" "$@"; }

build_etcd() {
  local dest=$TOOLS_DIR/etcd-$ETCD_VERSION
  [ -x "$dest/etcd" ] && return 0
  need_go etcd
  echo "building etcd $ETCD_VERSION into $dest (once; a few minutes)"
  mkdir -p "$dest"
  (cd "$RECIPES/etcd" && go_build build -trimpath -ldflags='-s -w' -o "$dest/etcd.partial" go.etcd.io/etcd/server/v3)
  mv "$dest/etcd.partial" "$dest/etcd"
}

build_kubernetes() {
  local dest=$TOOLS_DIR/kubernetes-$KUBE_VERSION cmd minor
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  # without these the server says it is v0.0.0, which clients and kwok distrust
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
    [ -x "$dest/$cmd" ] && continue
    need_go "$cmd"
    echo "building $cmd $KUBE_VERSION into $dest (once; the first of the three takes ~10 minutes)"
    mkdir -p "$dest"
    (cd "$RECIPES/kubernetes" && go_build build -trimpath -ldflags="$ldflags" -o "$dest/$cmd.partial" "k8s.io/kubernetes/cmd/$cmd")
    mv "$dest/$cmd.partial" "$dest/$cmd"
  done
}

build_kwok() {
  local dest=$TOOLS_DIR/kwok-$KWOK_VERSION module
  [ -x "$dest/kwok" ] && [ -s "$dest/stages.yaml" ] && return 0
  need_go kwok
  echo "building kwok $KWOK_VERSION into $dest (once)"
  mkdir -p "$dest"
  [ -x "$dest/kwok" ] || GOBIN=$dest go_build install -trimpath -ldflags='-s -w' "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # the kwok binary brings no behaviour of its own: the release's "fast" stages make nodes
  # Ready and pods Running and Ready at once, and finish pods being deleted
  module=$(cd "$TOOLS_DIR" && GOFLAGS=-mod=mod "$GO" mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
               pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    cat "$module/kustomize/stage/$stage.yaml"; echo "---"
  done > "$dest/stages.yaml.partial"
  mv "$dest/stages.yaml.partial" "$dest/stages.yaml"
}

mkdir -p "$TOOLS_DIR"
# two builds at once (two make runs) would race on the same files
exec 9>"$TOOLS_DIR/.build.lock"
flock 9
[ $# -eq 0 ] && set -- etcd kubernetes kwok
for tool in "$@"; do "build_$tool"; done

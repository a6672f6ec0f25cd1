#!/usr/bin/env bash
# The local testbed's Go-built binaries: kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, etcd, helm and kwok (simulated nodes and kubelets: pods are scheduled and become Ready
# without a container runtime), plus the Gateway API CRDs, all at the versions pinned in
# hack/versions.env.
#
#   hack/testbed.sh build   build (only) what is missing into the cache
#   hack/testbed.sh env     print export lines for the testbed (eval "$(hack/testbed.sh env)")
#   hack/testbed.sh status  list what is present and what is missing
#
# Cache: ${CHECKOUT_GATES_CACHE:-$HOME/.cache/checkout-gates}/bin/<KUBE_VERSION>/ and
#        .../crds/gateway-api/<GATEWAY_API_VERSION>/; the go commands' output goes to .../logs/
#        (its tail is printed on failure). Nothing is written inside the repo.
# Every binary is built from Go modules through the Go module proxy: a throwaway wrapper
# module in a temp dir requires the upstream module at the pinned version.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
set -a; . "$HACK_DIR/versions.env"; set +a

CACHE="${CHECKOUT_GATES_CACHE:-$HOME/.cache/checkout-gates}"
BIN_DIR="$CACHE/bin/$KUBE_VERSION"
CRD_DIR="$CACHE/crds/gateway-api/$GATEWAY_API_VERSION"
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"
# 2 cores: two compile jobs at once; more only costs memory and context switches.
BUILD_P="${TESTBED_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"

log() { printf '[testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Run a go command quietly into a log; on failure print the log's tail. Network steps are
# retried (the module proxy can hiccup on a fresh machine).
LOG_DIR=""
run_go() { # $1 = step name, $2 = attempts, rest = command (run in $PWD)
  local step="$1" attempts="$2" n=1 log
  shift 2
  log="$LOG_DIR/$step.log"
  while true; do
    if "$@" >"$log" 2>&1; then return 0; fi
    if [ "$n" -ge "$attempts" ]; then
      log "step $step failed; last lines of $log:"
      tail -n 60 "$log" >&2
      return 1
    fi
    log "step $step failed (attempt $n/$attempts), retrying in $((n * 10))s"
    sleep $((n * 10))
    n=$((n + 1))
  done
}

have_go() { command -v go >/dev/null 2>&1 || die "go not found (expected on PATH or at /usr/local/go/bin/go)"; }

# Directory of a downloaded module in the module cache: `go mod download -json` prints it.
module_dir() {
  local json n
  for n in 1 2 3; do
    json="$(cd "$1" && go mod download -json "$2" 2>>"$LOG_DIR/download.log")" && break
    [ "$n" -eq 3 ] && { tail -n 20 "$LOG_DIR/download.log" >&2; die "go mod download $2 failed: $json"; }
    log "go mod download $2 failed (attempt $n/3), retrying"; sleep $((n * 10))
  done
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or ""); sys.exit(0 if d.get("Dir") else 1)' <<<"$json" \
    || die "no Dir for $2: $json"
}

WORK_ROOT=""
cleanup() { [ -n "$WORK_ROOT" ] && rm -rf "$WORK_ROOT"; return 0; }
trap cleanup EXIT

new_wrapper() { # $1 = module name, $2 = go version; prints a fresh temp dir with a go.mod
  local dir
  dir="$(mktemp -d "$WORK_ROOT/wrapper.XXXXXX")"
  printf 'module %s\n\ngo %s\n' "$1" "$2" >"$dir/go.mod"
  echo "$dir"
}

install_bin() { # $1 = built file, $2 = name
  install -m 0755 "$1" "$BIN_DIR/.$2.tmp"
  mv -f "$BIN_DIR/.$2.tmp" "$BIN_DIR/$2"
}

build_kube() {
  local missing=() b
  for b in "${KUBE_BINS[@]}"; do [ -x "$BIN_DIR/$b" ] || missing+=("$b"); done
  [ "${#missing[@]}" -eq 0 ] && { log "kubernetes $KUBE_VERSION: present"; return 0; }
  log "kubernetes $KUBE_VERSION: building ${missing[*]}"

  local work kdir gomod_go minor staging_ver
  work="$(new_wrapper checkout-gates.local/testbed/kube 1.21)"
  kdir="$(module_dir "$work" "k8s.io/kubernetes@$KUBE_VERSION")"
  # The wrapper takes kubernetes' own go line and godebug defaults.
  gomod_go="$(awk '$1=="go"{print $2; exit}' "$kdir/go.mod")"
  minor="$(echo "$KUBE_VERSION" | sed -E 's/^v1\.([0-9]+)\..*/\1/')"
  staging_ver="$(echo "$KUBE_VERSION" | sed -E 's/^v1\./v0./')"
  {
    printf 'module checkout-gates.local/testbed/kube\n\ngo %s\n\n' "$gomod_go"
    grep -E '^godebug ' "$kdir/go.mod" || true
    printf '\nrequire k8s.io/kubernetes %s\n\n' "$KUBE_VERSION"
    # Every staging module that kubernetes requires (at v0.0.0, replaced by ./staging/...)
    # is replaced by its published tag k8s.io/X v0.N.M.
    awk -v ver="$staging_ver" '
      /^replace \($/ {inrep=1; next}
      inrep && /^\)/ {inrep=0; next}
      inrep && $2=="=>" && $3 ~ /^\.\/staging\// {print "replace " $1 " => " $1 " " ver}
    ' "$kdir/go.mod"
  } >"$work/go.mod"
  # Staging modules that kubernetes does not require (sample-*) are not published at every
  # tag: keep only replaces of modules kubernetes requires.
  local req
  req="$(awk '/^require \($/ {r=1; next} r && /^\)/ {r=0} r && $2=="v0.0.0" {print $1}' "$kdir/go.mod")"
  awk -v req="$req" 'BEGIN{n=split(req,a,"\n"); for(i=1;i<=n;i++) keep[a[i]]=1}
    /^replace / { if (!($2 in keep)) next } {print}' "$work/go.mod" >"$work/go.mod.new"
  mv "$work/go.mod.new" "$work/go.mod"
  log "wrapper go.mod: go $gomod_go, $(grep -c '^replace ' "$work/go.mod") staging replaces"

  local pkgs=() b
  for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b@$KUBE_VERSION"); done
  log "resolving modules (go get ${pkgs[*]}) ..."
  (cd "$work" && run_go kube-get 3 go get "${pkgs[@]}") || die "go get of kubernetes packages failed"
  log "resolved $(grep -c . "$work/go.sum") go.sum lines"

  local date ldflags p
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean"
    ldflags+=" -X $p.buildDate=$date"
  done
  mkdir -p "$BIN_DIR" "$work/out"
  for b in "${missing[@]}"; do
    local t0=$SECONDS
    log "go build $b (-p $BUILD_P) ..."
    (cd "$work" && run_go "build-$b" 2 go build -trimpath -p "$BUILD_P" -ldflags "$ldflags" -o "out/$b" \
      "k8s.io/kubernetes/cmd/$b") || die "go build $b failed"
    install_bin "$work/out/$b" "$b"
    log "built $b in $((SECONDS - t0))s"
  done
}

# etcd and helm share the KUBE_VERSION directory: a stamp file records their own version.
present() { [ -e "$BIN_DIR/$1" ] && [ "$(cat "$BIN_DIR/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$BIN_DIR/.$1.version"; }

build_etcd() {
  present etcd "$ETCD_VERSION" && { log "etcd $ETCD_VERSION: present"; return 0; }
  log "etcd $ETCD_VERSION: building"
  local work sdir gomod_go t0=$SECONDS
  work="$(new_wrapper checkout-gates.local/testbed/etcd 1.21)"
  sdir="$(module_dir "$work" "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"
  gomod_go="$(awk '$1=="go"{print $2; exit}' "$sdir/go.mod")"
  printf 'module checkout-gates.local/testbed/etcd\n\ngo %s\n' "$gomod_go" >"$work/go.mod"
  cat >"$work/main.go" <<'GO'
// Command etcd: the upstream etcd server entry point, built from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$work" && run_go etcd-get 3 go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
    && run_go etcd-tidy 3 go mod tidy) || die "resolving etcd failed"
  mkdir -p "$BIN_DIR"
  log "go build etcd (-p $BUILD_P) ..."
  (cd "$work" && run_go build-etcd 2 go build -trimpath -p "$BUILD_P" \
      -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}" -o out/etcd .) \
    || die "go build etcd failed"
  install_bin "$work/out/etcd" etcd
  stamp etcd "$ETCD_VERSION"
  log "built etcd in $((SECONDS - t0))s"
}

# A Go command built from its own module at a pinned version, with a version stamp:
# build_module_bin NAME VERSION MODULE PACKAGE LDFLAGS
build_module_bin() {
  local name="$1" version="$2" module="$3" package="$4" ldflags="$5" work mdir gomod_go t0=$SECONDS
  present "$name" "$version" && { log "$name $version: present"; return 0; }
  log "$name $version: building"
  work="$(new_wrapper "checkout-gates.local/testbed/$name" 1.21)"
  mdir="$(module_dir "$work" "$module@$version")"
  gomod_go="$(awk '$1=="go"{print $2; exit}' "$mdir/go.mod")"
  printf 'module checkout-gates.local/testbed/%s\n\ngo %s\n' "$name" "$gomod_go" >"$work/go.mod"
  (cd "$work" && run_go "$name-get" 3 go get "$package@$version") || die "resolving $name failed"
  mkdir -p "$BIN_DIR"
  log "go build $name (-p $BUILD_P) ..."
  (cd "$work" && run_go "build-$name" 2 go build -trimpath -p "$BUILD_P" -ldflags "$ldflags" -o "out/$name" "$package") \
    || die "go build $name failed"
  install_bin "$work/out/$name" "$name"
  stamp "$name" "$version"
  log "built $name in $((SECONDS - t0))s"
}

build_helm() {
  local major v
  major="$(echo "$HELM_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')"
  v="helm.sh/helm/v${major}/internal/version"
  build_module_bin helm "$HELM_VERSION" "helm.sh/helm/v${major}" "helm.sh/helm/v${major}/cmd/helm" \
    "-s -w -X $v.version=${HELM_VERSION} -X $v.gitTreeState=clean"
}

build_kwok() {
  build_module_bin kwok "$KWOK_VERSION" sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok \
    "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
}

# kwok plays nodes and pods by the Stage objects of its config: its own "fast" stages (nodes Ready
# at once with a heartbeat, pods Running and Ready at once, completed, deleted), from its module.
fetch_kwok_stages() {
  local out="$BIN_DIR/kwok-stages.yaml" work kdir f
  present kwok-stages.yaml "$KWOK_VERSION" && { log "kwok stages $KWOK_VERSION: present"; return 0; }
  work="$(new_wrapper checkout-gates.local/testbed/kwok-stages 1.21)"
  kdir="$(module_dir "$work" "sigs.k8s.io/kwok@$KWOK_VERSION")"
  mkdir -p "$BIN_DIR"
  {
    for f in node/fast/node-initialize node/heartbeat/node-heartbeat pod/fast/pod-ready pod/fast/pod-complete \
      pod/fast/pod-delete; do
      [ -f "$kdir/kustomize/stage/$f.yaml" ] || die "no kustomize/stage/$f.yaml in $kdir"
      echo "---"
      cat "$kdir/kustomize/stage/$f.yaml"
    done
  } >"$out.tmp"
  mv -f "$out.tmp" "$out"
  stamp kwok-stages.yaml "$KWOK_VERSION"
  log "kwok stages written to $out"
}

fetch_gateway_crds() {
  if [ -f "$CRD_DIR/.complete" ]; then log "Gateway API CRDs $GATEWAY_API_VERSION: present"; return 0; fi
  log "Gateway API CRDs $GATEWAY_API_VERSION: downloading"
  local work gdir
  work="$(new_wrapper checkout-gates.local/testbed/gwapi 1.21)"
  gdir="$(module_dir "$work" "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")"
  [ -d "$gdir/config/crd/standard" ] || die "no config/crd/standard in $gdir"
  rm -rf "$CRD_DIR"; mkdir -p "$CRD_DIR"
  cp "$gdir"/config/crd/standard/*.yaml "$CRD_DIR/"
  chmod u+w "$CRD_DIR"/*.yaml
  touch "$CRD_DIR/.complete"
  log "copied $(ls "$CRD_DIR"/*.yaml | wc -l) CRD files to $CRD_DIR"
}

cmd_build() {
  have_go
  WORK_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/checkout-gates-build.XXXXXX")"
  LOG_DIR="$CACHE/logs"
  mkdir -p "$LOG_DIR"
  : >"$LOG_DIR/download.log"
  local t0=$SECONDS
  log "go: $(go version); cache: $CACHE; jobs: $BUILD_P"
  mkdir -p "$BIN_DIR"
  fetch_gateway_crds
  build_etcd
  build_kube
  build_helm
  build_kwok
  fetch_kwok_stages
  log "done in $((SECONDS - t0))s; binaries in $BIN_DIR"
  "$BIN_DIR/kubectl" version --client 2>/dev/null | head -1 >&2 || true
}

cmd_env() {
  printf 'export CHECKOUT_GATES_CACHE=%q\n' "$CACHE"
  printf 'export CHECKOUT_GATES_BIN=%q\n' "$BIN_DIR"
  printf 'export CHECKOUT_GATES_GATEWAY_CRDS=%q\n' "$CRD_DIR"
  printf 'export CHECKOUT_GATES_PROMETHEUS=%q\n' "${CHECKOUT_GATES_PROMETHEUS:-/usr/bin/prometheus}"
  printf 'export CHECKOUT_GATES_PROMTOOL=%q\n' "${CHECKOUT_GATES_PROMTOOL:-/usr/bin/promtool}"
  printf 'export CHECKOUT_GATES_ALERTMANAGER=%q\n' "${CHECKOUT_GATES_ALERTMANAGER:-/usr/bin/prometheus-alertmanager}"
  printf 'export PATH=%q:"$PATH"\n' "$BIN_DIR"
}

cmd_status() {
  local b rc=0
  for b in etcd "${KUBE_BINS[@]}" helm kwok; do
    if [ -x "$BIN_DIR/$b" ] && { [ "$b" != etcd ] || present etcd "$ETCD_VERSION"; } \
      && { [ "$b" != helm ] || present helm "$HELM_VERSION"; } \
      && { [ "$b" != kwok ] || present kwok "$KWOK_VERSION"; }; then echo "present  $BIN_DIR/$b"; else echo "MISSING  $BIN_DIR/$b"; rc=1; fi
  done
  if present kwok-stages.yaml "$KWOK_VERSION"; then echo "present  $BIN_DIR/kwok-stages.yaml"; else echo "MISSING  $BIN_DIR/kwok-stages.yaml"; rc=1; fi
  if [ -f "$CRD_DIR/.complete" ]; then echo "present  $CRD_DIR"; else echo "MISSING  $CRD_DIR"; rc=1; fi
  return $rc
}

case "${1:-}" in
  build) cmd_build ;;
  env) cmd_env ;;
  status) cmd_status ;;
  *) echo "usage: $0 build|env|status" >&2; exit 2 ;;
esac

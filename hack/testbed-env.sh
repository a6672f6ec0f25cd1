# shellcheck shell=sh
# Sourced (by the Makefile with /bin/sh, or by hand from the repo root or via its path in
# bash): exports where the testbed's binaries are. POSIX sh; changes no shell options.
#   CHECKOUT_GATES_BIN           Go-built etcd, kube-apiserver, kube-controller-manager, kubectl, helm
#   CHECKOUT_GATES_GATEWAY_CRDS  Gateway API standard-channel CRDs
#   CHECKOUT_GATES_PROMETHEUS / _PROMTOOL / _ALERTMANAGER   Debian's binaries
#   PATH                         prefixed with CHECKOUT_GATES_BIN (so `kubectl` is ours)
_cg_hack=hack
if [ -n "${BASH_SOURCE:-}" ]; then _cg_hack=$(dirname "$BASH_SOURCE"); fi
if [ ! -f "$_cg_hack/versions.env" ]; then
  echo "testbed-env.sh: $_cg_hack/versions.env not found (source it from the repo root)" >&2
else
  . "$_cg_hack/versions.env"
  export KUBE_VERSION ETCD_VERSION HELM_VERSION GATEWAY_API_VERSION KWOK_VERSION
  CHECKOUT_GATES_CACHE="${CHECKOUT_GATES_CACHE:-$HOME/.cache/checkout-gates}"
  CHECKOUT_GATES_BIN="$CHECKOUT_GATES_CACHE/bin/$KUBE_VERSION"
  CHECKOUT_GATES_GATEWAY_CRDS="$CHECKOUT_GATES_CACHE/crds/gateway-api/$GATEWAY_API_VERSION"
  CHECKOUT_GATES_PROMETHEUS="${CHECKOUT_GATES_PROMETHEUS:-/usr/bin/prometheus}"
  CHECKOUT_GATES_PROMTOOL="${CHECKOUT_GATES_PROMTOOL:-/usr/bin/promtool}"
  CHECKOUT_GATES_ALERTMANAGER="${CHECKOUT_GATES_ALERTMANAGER:-/usr/bin/prometheus-alertmanager}"
  export CHECKOUT_GATES_CACHE CHECKOUT_GATES_BIN CHECKOUT_GATES_GATEWAY_CRDS
  export CHECKOUT_GATES_PROMETHEUS CHECKOUT_GATES_PROMTOOL CHECKOUT_GATES_ALERTMANAGER
  case ":$PATH:" in
    *":$CHECKOUT_GATES_BIN:"*) ;;
    *) PATH="$CHECKOUT_GATES_BIN:$PATH"; export PATH ;;
  esac
fi
unset _cg_hack

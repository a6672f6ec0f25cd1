#!/usr/bin/env bash
# Debian packages the testbed needs: Prometheus (with promtool) and Alertmanager.
# Idempotent: installs only what is missing, and runs `apt-get update` only then.
# Their packages try to start services on install; there is no systemd here (nor in CI),
# so service starts are denied with a temporary policy-rc.d and any leftover failure of
# a maintainer script's service start is tolerated as long as the binaries are in place.
set -euo pipefail

PACKAGES=(prometheus prometheus-alertmanager)
BINARIES=(/usr/bin/prometheus /usr/bin/promtool /usr/bin/prometheus-alertmanager)

log() { printf '[install-deps] %s\n' "$*" >&2; }

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "present: ${PACKAGES[*]}"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  log "installing: ${missing[*]}"
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 0755 "$policy"
    created_policy=1
  fi
  restore() { if [ "$created_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi; }
  trap restore EXIT
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    log "apt-get install reported an error (often a service start without systemd); finishing configuration"
    $SUDO dpkg --configure -a || true
  fi
fi

for b in "${BINARIES[@]}"; do
  [ -x "$b" ] || { log "ERROR: $b missing after install"; exit 1; }
done
log "ok: $(/usr/bin/prometheus --version 2>&1 | head -1); $(/usr/bin/prometheus-alertmanager --version 2>&1 | head -1)"

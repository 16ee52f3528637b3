#!/usr/bin/env bash
# pacsgate vs nginx, HAProxy and stunnel, side by side in one run (see bench.py's header).
#   bench/run.sh [--runs N] [--seconds S] [--out bench/results.md]
# Installs the peers it needs (Debian packages), builds pacsgate in release mode, then runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
packages=(nginx libnginx-mod-stream haproxy stunnel4 wrk dcmtk curl openssl gcc libc6-dev util-linux)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  # policy-rc.d keeps Debian's postinst from starting the packaged nginx/haproxy services.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  $SUDO rm -f /usr/sbin/policy-rc.d
fi
cargo build --release --quiet --bin pacsgate
exec python3 bench/bench.py "$@"

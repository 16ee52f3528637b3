#!/usr/bin/env bash
# pacsgate as a benchmark candidate: builds its configuration from the BENCH_* environment
# (see bench/README.md) and runs in the foreground until SIGTERM.
#   PACSGATE_BIN   the binary (default: release build under $CARGO_TARGET_DIR)
set -euo pipefail
: "${BENCH_HTTPS_LISTEN:?start me through a benchmark harness (BENCH_* variables)}"
BIN=${PACSGATE_BIN:-${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}/release/pacsgate}
cfg="$BENCH_WORKDIR/pacsgate-bench.toml"
cat >"$cfg" <<TOML
[tls]
cert = "$BENCH_CERT"
key = "$BENCH_KEY"
watch = false
[http]
# The terminator comparison: nginx/HAProxy/stunnel do not authenticate either.
authentication = "none"
listen = "$BENCH_HTTPS_LISTEN"
upstream = "http://$BENCH_HTTP_UPSTREAM"
max_connections = 4000
[dicom]
listen = "$BENCH_DICOM_LISTEN"
upstream = "$BENCH_DICOM_UPSTREAM"
[log]
level = "warn"
[server]
shutdown_grace = "1s"
TOML
# --access-log: audit every request to a file, as the peers then log each one.
if [ "${BENCH_ACCESS_LOG:-0}" = 1 ]; then
  printf '[audit]\npath = "%s"\n' "${BENCH_ACCESS_LOG_PATH:?}" >>"$cfg"
fi
exec "$BIN" run --config "$cfg"

#!/usr/bin/env bash
# Cost of auditing every request: keep-alive HTTPS req/s and gateway CPU per request,
# interleaved in one run, for a binary BEFORE (e.g. main's release build) and AFTER (this
# tree's), each with the audit file (`[audit] path`) and with the shipped setup (records
# through the log to stderr, redirected to a file), plus AFTER without any audit record
# (`log.level = "warn"`, no path) as the floor. Backend: nginx answering 1 KiB on loopback.
# Gateway pinned to CPU 0 (one worker thread; the audit writer thread shares that CPU);
# wrk and nginx to CPU 1.
#   BEFORE=/path/to/old/pacsgate ROUNDS=3 DURATION=8s CONNS=32 bench/audit.sh
# Needs: wrk, nginx, curl, taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
AFTER=${PACSGATE_BIN:-${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}/release/pacsgate}
BEFORE=${BEFORE:?set BEFORE to the binary to compare against}
work=$(mktemp -d)
# shellcheck source=bench/keepalive-lib.sh
. bench/keepalive-lib.sh
start_backend
"$AFTER" cert self-signed --cert "$work/server.crt" --key "$work/server.key" >/dev/null

config() { # variant port
  local level=info audit=""
  case "$1" in
    *-file) audit="$work/audit-$1.jsonl" ;;
    none) level=warn ;;
  esac
  gateway_toml "$2" none "$level" "$audit"
}

run() { # variant -> "req/s cpu-us/req"
  local port bin; port=$(free_port)
  case "$1" in before-*) bin=$BEFORE ;; *) bin=$AFTER ;; esac
  config "$1" "$port" >"$work/$1.toml"
  taskset -c 0 "$bin" run --config "$work/$1.toml" 2>"$work/$1.log" &
  local gw=$!
  wait_port "$port"
  local url="https://127.0.0.1:$port/1k"
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null
  local before after out rps reqs
  before=$(cpu_ticks "$gw")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" "$url")
  after=$(cpu_ticks "$gw")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  kill "$gw"; wait "$gw" 2>/dev/null || true
  echo "$rps $(python3 -c "print(f'{($after-$before)/$(getconf CLK_TCK)/$reqs*1e6:.1f}')")"
}

variants=(none before-file after-file before-log after-log)
declare -A rps cpu
echo "| round | $(printf '%s req/s (CPU us/req) | ' "${variants[@]}")"
echo "|---|$(printf -- '---|%.0s' "${variants[@]}")"
for r in $(seq 1 "$ROUNDS"); do
  line="| $r |"
  for v in "${variants[@]}"; do
    read -r q c < <(run "$v")
    rps[$v]+="$q "; cpu[$v]+="$c "
    line+=" $q ($c) |"
  done
  echo "$line"
done
line="| median |"
for v in "${variants[@]}"; do
  line+=" $(python3 -c "import statistics,sys; print(f'{statistics.median(map(float,sys.argv[1].split())):.0f} ({statistics.median(map(float,sys.argv[2].split())):.1f})')" "${rps[$v]}" "${cpu[$v]}") |"
done
echo "$line"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

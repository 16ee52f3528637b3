#!/usr/bin/env bash
# Cost of the metrics on the request path: keep-alive HTTPS req/s and gateway CPU per
# request of two release binaries, interleaved in one run: BASE (without the metrics,
# e.g. built from the commit before them) and NEW (with them, [admin] configured and
# /metrics scraped every second during the run, harsher than Prometheus' 15 s). Both in
# pass-through mode (the cheapest request, so the counters weigh most) with the audit
# file on. Backend: nginx answering 1 KiB on loopback. Gateway pinned to CPU 0; wrk,
# nginx and the scraper to CPU 1.
#   BASE_BIN=/path/old NEW_BIN=/path/new ROUNDS=5 DURATION=10s CONNS=32 bench/metrics.sh
# Needs: wrk, nginx, curl, taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
: "${BASE_BIN:?set BASE_BIN to a release binary without metrics}"
: "${NEW_BIN:?set NEW_BIN to a release binary with metrics}"
work=$(mktemp -d)
# shellcheck source=bench/keepalive-lib.sh
. bench/keepalive-lib.sh
start_backend
"$NEW_BIN" cert self-signed --cert "$work/server.crt" --key "$work/server.key" >/dev/null

config() { # mode port admin-port
  gateway_toml "$2" none warn "$work/audit-$1.jsonl"
  [ "$1" = new ] && printf '[admin]\nlisten = "127.0.0.1:%s"\n' "$3"
  return 0
}


run() { # mode -> "req/s cpu-us/req"
  local port admin bin; port=$(free_port); admin=$(free_port)
  bin=$([ "$1" = new ] && echo "$NEW_BIN" || echo "$BASE_BIN")
  config "$1" "$port" "$admin" >"$work/$1.toml"
  taskset -c 0 "$bin" run --config "$work/$1.toml" 2>"$work/$1.log" &
  local gw=$!
  wait_port "$port"
  local url="https://127.0.0.1:$port/1k"
  [ "$(curl -sk -o /dev/null -w '%{http_code}' "$url")" = 200 ] || { echo "$1: no 200" >&2; cat "$work/$1.log" >&2; exit 1; }
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null
  local scraper=""
  if [ "$1" = new ]; then
    (while true; do taskset -c 1 curl -s -o /dev/null "http://127.0.0.1:$admin/metrics"; sleep 1; done) &
    scraper=$!
  fi
  local before after out rps reqs
  before=$(cpu_ticks "$gw")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" "$url")
  after=$(cpu_ticks "$gw")
  [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  kill "$gw"; wait "$gw" 2>/dev/null || true
  echo "$rps $(python3 -c "print(f'{($after-$before)/$(getconf CLK_TCK)/$reqs*1e6:.1f}')")"
}

declare -a base new basecpu newcpu
echo "| round | base req/s | new req/s | new/base req/s | base CPU us/req | new CPU us/req | base/new CPU |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  read -r b bc < <(run base)
  read -r n nc < <(run new)
  base+=("$b"); new+=("$n"); basecpu+=("$bc"); newcpu+=("$nc")
  echo "| $r | $b | $n | $(python3 -c "print(f'{$n/$b:.3f}')") | $bc | $nc | $(python3 -c "print(f'{$bc/$nc:.3f}')") |"
done
python3 - "${base[*]}" "${new[*]}" "${basecpu[*]}" "${newcpu[*]}" <<'PY'
import statistics, sys
b, n, bc, nc = ([float(x) for x in a.split()] for a in sys.argv[1:5])
mb, mn, mbc, mnc = (statistics.median(v) for v in (b, n, bc, nc))
print(f"| median | {mb:.0f} | {mn:.0f} | {mn/mb:.3f} | {mbc:.1f} | {mnc:.1f} | {mbc/mnc:.3f} |")
PY

#!/usr/bin/env bash
# Cost of sharing limits through Redis ([cluster]): keep-alive HTTPS req/s through the
# same release binary with the same policy (an argon2id user sending HTTP Basic on every
# request, per-IP and per-user rate limits, leased from Redis, plus the batched lockout
# check in cluster mode) with limits in process ("local") and in Redis ("redis").
# Both gateways run at once, idle in turn: each round is one wrk run against each, in
# alternating order (local first in odd rounds), so a machine whose speed drifts (a shared
# VM) affects both sides of a round alike. Both write the audit file. Backend: nginx
# answering 1 KiB on loopback. Gateways pinned to CPU 0; wrk, nginx and redis-server to
# CPU 1 (Redis is another machine's CPU in a deployment; its CPU per request is reported
# separately).
# AUTH=none: no users (pass-through with the per-IP rate only): shows the rate path alone,
# whose generous bursts lease requests from Redis instead of asking per request.
#   ROUNDS=15 DURATION=3s CONNS=32 [AUTH=basic|none] bench/cluster.sh
# Needs: wrk, nginx, curl, taskset, redis-server (apt-get install wrk nginx redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-15}
DURATION=${DURATION:-3s}
CONNS=${CONNS:-32}
AUTH=${AUTH:-basic}
BIN=${PACSGATE_BIN:-${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}/release/pacsgate}
[ -x "$BIN" ] || cargo build --release
for tool in wrk nginx curl taskset redis-server; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nginx redis-server)" >&2; exit 1; }
done
work=$(mktemp -d)
# shellcheck source=bench/keepalive-lib.sh
. bench/keepalive-lib.sh
start_backend

redis=$(free_port)
taskset -c 1 redis-server --bind 127.0.0.1 --port "$redis" --save '' --appendonly no \
  --dir "$work" --logfile '' >/dev/null &
pids+=($!)
redis_pid=$!
wait_port "$redis"

"$BIN" cert self-signed --cert "$work/server.crt" --key "$work/server.key" >/dev/null
hash_user=$(printf 'user-pw\n' | "$BIN" hash-password)

config() { # mode port
  gateway_toml "$2" "$([ "$AUTH" = none ] && echo none || echo required)" warn "$work/audit-$1.jsonl"
  cat <<TOML
[http.rate_limits]
per_ip = "1000000/s burst 1000000"
TOML
  if [ "$AUTH" = basic ]; then
    cat <<TOML
per_user = "1000000/s burst 1000000"
[users.user]
password_hash = "$hash_user"
[[http.rules]]
name = "user-read"
users = ["user"]
methods = ["GET"]
paths = ["/**"]
TOML
  fi
  [ "$1" = redis ] || return 0
  # 250 ms, not the default 50 ms: on a loaded 2-core machine a Redis sharing CPU 1 with
  # wrk and nginx misses 50 ms now and then, and a degraded run measures local limits.
  printf '[cluster]\nredis = "redis://127.0.0.1:%s"\nkey_prefix = "bench"\ntimeout = "250ms"\n' "$redis"
}

declare -A port gw
start() { # mode: a gateway, checked and warmed up
  port[$1]=$(free_port)
  config "$1" "${port[$1]}" >"$work/$1.toml"
  taskset -c 0 "$BIN" run --config "$work/$1.toml" 2>"$work/$1.log" &
  gw[$1]=$!
  pids+=($!)
  wait_port "${port[$1]}"
  [ "$(curl -sk -o /dev/null -w '%{http_code}' -H "$auth" "$(url "$1")")" = 200 ] || { echo "$1: no 200" >&2; cat "$work/$1.log" >&2; exit 1; }
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s -H "$auth" "$(url "$1")" >/dev/null
}
url() { echo "https://127.0.0.1:${port[$1]}/1k"; }
auth="Authorization: Basic $(printf user:user-pw | base64)"

run() { # mode -> req/s, gateway CPU us/req, redis CPU us/req, wrk's mean latency
  local before after rbefore rafter out rps reqs
  before=$(cpu_ticks "${gw[$1]}"); rbefore=$(cpu_ticks "$redis_pid")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" -H "$auth" "$(url "$1")")
  after=$(cpu_ticks "${gw[$1]}"); rafter=$(cpu_ticks "$redis_pid")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  python3 -c "
tck = $(getconf CLK_TCK)
print(f'$rps {($after-$before)/tck/$reqs*1e6:.1f} {($rafter-$rbefore)/tck/$reqs*1e6:.1f} $(awk '/Latency/ {print $2}' <<<"$out")')"
}

start local
start redis
declare -a loc red loccpu redcpu rediscpu
echo "| round | local req/s | redis req/s | redis/local req/s | local CPU us/req | redis-mode gateway CPU us/req | redis-server CPU us/req | mean latency local / redis |"
echo "|---|---|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then
    read -r l lc _ ll < <(run local); read -r d dc rc dl < <(run redis)
  else
    read -r d dc rc dl < <(run redis); read -r l lc _ ll < <(run local)
  fi
  loc+=("$l"); red+=("$d"); loccpu+=("$lc"); redcpu+=("$dc"); rediscpu+=("$rc")
  echo "| $r | $l | $d | $(python3 -c "print(f'{$d/$l:.3f}')") | $lc | $dc | $rc | $ll / $dl |"
done
for mode in local redis; do
  kill "${gw[$mode]}"; wait "${gw[$mode]}" 2>/dev/null || true
  non2xx=$(grep -c '"status":[45]' "$work/audit-$mode.jsonl" || true)
  [ "$non2xx" = 0 ] || { echo "$mode: $non2xx non-2xx answers" >&2; exit 1; }
done
# A run that fell back to local limits would measure the wrong thing.
! grep -q 'shared limits degraded' "$work/redis.log" || { echo "redis: Redis degraded during the run" >&2; exit 1; }
python3 - "${loc[*]}" "${red[*]}" "${loccpu[*]}" "${redcpu[*]}" "${rediscpu[*]}" <<'PY'
import statistics, sys
l, d, lc, dc, rc = ([float(x) for x in a.split()] for a in sys.argv[1:6])
ratios = sorted(b / a for a, b in zip(l, d))
q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
m = statistics.median
print(f"| median | {m(l):.0f} | {m(d):.0f} | {m(ratios):.3f} (quartiles {q[0]:.2f}-{q[2]:.2f}) | {m(lc):.1f} | {m(dc):.1f} | {m(rc):.1f} | |")
PY

#!/usr/bin/env bash
# Cost of the HTTPS access policy: keep-alive HTTPS req/s through the same release binary
# with the policy ON (2 argon2id users, HTTP Basic on every request, 20 rules with the
# match last, per-IP and per-user rate limits) and OFF (pass-through mode: no users, no
# rules), interleaved in one run. Both write the audit file. Backend: nginx answering
# 1 KiB on loopback. Gateway pinned to CPU 0; wrk and nginx to CPU 1.
#   ROUNDS=3 DURATION=10s CONNS=32 bench/policy.sh
# Needs: wrk, nginx, curl, taskset (apt-get install wrk nginx curl util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
BIN=${PACSGATE_BIN:-${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}/release/pacsgate}
[ -x "$BIN" ] || cargo build --release
for tool in wrk nginx curl taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nginx)" >&2; exit 1; }
done
work=$(mktemp -d)
# shellcheck source=bench/keepalive-lib.sh
. bench/keepalive-lib.sh
start_backend

"$BIN" cert self-signed --cert "$work/server.crt" --key "$work/server.key" >/dev/null
hash_user=$(printf 'user-pw\n' | "$BIN" hash-password)
hash_admin=$(printf 'admin-pw\n' | "$BIN" hash-password)

config() { # mode port
  gateway_toml "$2" "$([ "$1" = on ] && echo required || echo none)" warn "$work/audit-$1.jsonl"
  [ "$1" = on ] || return 0
  cat <<TOML
[http.rate_limits]
per_ip = "1000000/s burst 1000000"
per_user = "1000000/s burst 1000000"
[users.admin]
password_hash = "$hash_admin"
[users.user]
password_hash = "$hash_user"
TOML
  for i in $(seq 1 19); do
    printf '[[http.rules]]\nname = "decoy-%s"\nusers = ["admin", "user"]\nsources = ["10.%s.0.0/16"]\nmethods = ["GET", "POST"]\npaths = ["/decoy-%s/**", "/instances/*/decoy-%s"]\n' "$i" "$i" "$i" "$i"
  done
  printf '[[http.rules]]\nname = "user-read"\nusers = ["user"]\nmethods = ["GET"]\npaths = ["/**"]\n'
}

run() { # mode -> req/s
  local port; port=$(free_port)
  config "$1" "$port" >"$work/$1.toml"
  taskset -c 0 "$BIN" run --config "$work/$1.toml" 2>"$work/$1.log" &
  local gw=$!
  wait_port "$port"
  local url="https://127.0.0.1:$port/1k" auth="Authorization: Basic $(printf user:user-pw | base64)"
  [ "$(curl -sk -o /dev/null -w '%{http_code}' -H "$auth" "$url")" = 200 ] || { echo "$1: no 200" >&2; cat "$work/$1.log" >&2; exit 1; }
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s -H "$auth" "$url" >/dev/null
  local before after out rps reqs
  before=$(cpu_ticks "$gw")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" -H "$auth" "$url")
  after=$(cpu_ticks "$gw")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  local non2xx; non2xx=$(grep -c '"status":[45]' "$work/audit-$1.jsonl" || true)
  kill "$gw"; wait "$gw" 2>/dev/null || true
  [ "$non2xx" = 0 ] || { echo "$1: $non2xx non-2xx answers" >&2; exit 1; }
  # req/s and the gateway's CPU time per request (us): the second is what the policy
  # costs, and is less disturbed by other load on a shared machine.
  echo "$rps $(python3 -c "print(f'{($after-$before)/$(getconf CLK_TCK)/$reqs*1e6:.1f}')")"
}


declare -a off on offcpu oncpu
echo "| round | off req/s | on req/s | on/off req/s | off CPU us/req | on CPU us/req | off/on CPU |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  read -r o oc < <(run off)
  read -r n nc < <(run on)
  off+=("$o"); on+=("$n"); offcpu+=("$oc"); oncpu+=("$nc")
  echo "| $r | $o | $n | $(python3 -c "print(f'{$n/$o:.3f}')") | $oc | $nc | $(python3 -c "print(f'{$oc/$nc:.3f}')") |"
done
python3 - "${off[*]}" "${on[*]}" "${offcpu[*]}" "${oncpu[*]}" <<'PY'
import statistics, sys
off, on, oc, nc = ([float(x) for x in a.split()] for a in sys.argv[1:5])
mo, mn, moc, mnc = (statistics.median(v) for v in (off, on, oc, nc))
print(f"| median | {mo:.0f} | {mn:.0f} | {mn/mo:.3f} | {moc:.1f} | {mnc:.1f} | {moc/mnc:.3f} |")
PY

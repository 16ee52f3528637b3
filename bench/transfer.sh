#!/usr/bin/env bash
# Bulk transfers through the gateway, two release binaries side by side in one run:
# syscalls (strace -c) and gateway CPU for 64 MiB HTTPS uploads and downloads (HTTP/1.1
# and HTTP/2, curl) to nginx on loopback, and for DICOM TLS C-STOREs of 512 KiB files
# (dcmtk storescu +tla -> gateway -> storescp --ignore). Gateway pinned to CPU 0, peers to
# CPU 1. The strace pass counts calls only; CPU is measured in separate passes without
# strace, rounds interleaved (ROUNDS), each pass moving REPS x 64 MiB or FILES files.
#   BEFORE=/path/old/pacsgate [AFTER=/path/new/pacsgate] ROUNDS=3 REPS=10 FILES=300 bench/transfer.sh
# Needs: nginx, curl, dcmtk, strace, taskset, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${BEFORE:?set BEFORE to the binary to compare against}
AFTER=${AFTER:-${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}/release/pacsgate}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-10}
FILES=${FILES:-300}
work=$(mktemp -d)
# shellcheck source=bench/keepalive-lib.sh
. bench/keepalive-lib.sh

head -c $((64 << 20)) /dev/urandom >"$work/blob"
# Uploads go to /up, which nginx proxies to itself (its own address and port: nginx
# variables) so the body is read whole; downloads fetch the 64 MiB blob.
start_backend "client_max_body_size 0; client_body_temp_path $work;" \
  "location /up { client_body_buffer_size 1m; proxy_pass http://\$server_addr:\$server_port/sink; }
    location /sink { return 200 \"ok\"; }
    location /blob { root $work; rewrite ^ /blob break; }"
scp=$(free_port)
taskset -c 1 /usr/bin/storescp --ignore "$scp" &
pids+=($!)
wait_port "$scp"
python3 - "$work/img.dcm" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location('bench', 'bench/bench.py')
b = importlib.util.module_from_spec(spec); spec.loader.exec_module(b)
b.make_dicom(sys.argv[1], 512 * 1024)
PY
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" \
  -out "$work/cert.pem" -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null

start_gateway() { # binary -> sets gw, hport, dport
  hport=$(free_port); dport=$(free_port)
  cat >"$work/gw.toml" <<TOML
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
watch = false
[http]
listen = "127.0.0.1:$hport"
upstream = "http://127.0.0.1:$backend"
authentication = "none"
[dicom]
listen = "127.0.0.1:$dport"
upstream = "127.0.0.1:$scp"
[log]
level = "warn"
[server]
worker_threads = 1
shutdown_grace = "1s"
[audit]
path = "$work/audit.jsonl"
TOML
  taskset -c 0 "$1" run --config "$work/gw.toml" 2>"$work/gw.log" &
  gw=$!
  wait_port "$hport"; wait_port "$dport"
}

transfer() { # case reps
  local i url="https://127.0.0.1:$hport"
  for i in $(seq "$2"); do
    case $1 in
      up-h1) taskset -c 1 curl --http1.1 -sfk -o /dev/null -H "Expect:" --data-binary @"$work/blob" "$url/up" ;;
      up-h2) taskset -c 1 curl --http2 -sfk -o /dev/null -H "Expect:" --data-binary @"$work/blob" "$url/up" ;;
      down-h1) taskset -c 1 curl --http1.1 -sfk -o /dev/null "$url/blob" ;;
      down-h2) taskset -c 1 curl --http2 -sfk -o /dev/null "$url/blob" ;;
      dicom)
        local files=() f
        for f in $(seq "$FILES"); do files+=("$work/img.dcm"); done
        taskset -c 1 /usr/bin/storescu -q -aec BENCH +tla +cf "$work/cert.pem" 127.0.0.1 "$dport" "${files[@]}"
        return ;;
    esac
  done
}

cases=(up-h1 up-h2 down-h1 down-h2 dicom)
unit() { [ "$1" = dicom ] && echo "per $FILES x 512 KiB files" || echo "per 64 MiB"; }

echo "## syscalls by the gateway (strace -c; one transfer of each)"
echo "| case | before: recvfrom / writev+sendto / all | after: recvfrom / writev+sendto / all |"
echo "|---|---|---|"
for c in "${cases[@]}"; do
  line="| $c ($(unit "$c")) |"
  for bin in "$BEFORE" "$AFTER"; do
    start_gateway "$bin"
    strace -c -f -p "$gw" -o "$work/strace.txt" &
    st=$!
    sleep 0.5 # strace attaches asynchronously; nothing to wait on but its own start
    transfer "$c" 1
    kill -INT "$st"; wait "$st" 2>/dev/null || true
    kill "$gw"; wait "$gw" 2>/dev/null || true
    line+=" $(awk '$NF=="recvfrom"{r=$4} $NF=="writev"||$NF=="sendto"{w+=$4} $NF=="total"{t=$4} END{printf "%d / %d / %d", r, w, t}' "$work/strace.txt") |"
  done
  echo "$line"
done

echo
echo "## gateway CPU ms ($ROUNDS rounds interleaved; HTTP: $REPS x 64 MiB per pass)"
echo "| round | case | before | after |"
echo "|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  for c in "${cases[@]}"; do
    line="| $r | $c |"
    for bin in "$BEFORE" "$AFTER"; do
      start_gateway "$bin"
      c0=$(cpu_ticks "$gw")
      transfer "$c" "$REPS"
      c1=$(cpu_ticks "$gw")
      kill "$gw"; wait "$gw" 2>/dev/null || true
      line+=" $(( (c1 - c0) * 1000 / $(getconf CLK_TCK) )) |"
    done
    echo "$line"
  done
done

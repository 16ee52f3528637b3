#!/usr/bin/env bash
# Master keys outside the host: Orthanc 1.10.1 ingest of 200 files (storescu, best of 3)
# with the encrypting plugin under a key file, under an AWS KMS key with the default
# data-key cache, and under the KMS key with caching off; then every file read back over
# REST with caching off. KMS is moto's server on loopback (the real KMS API, in Python: a
# call costs more CPU and less latency than AWS's regional endpoint), directly and behind
# a proxy that adds a 10 ms round trip. The KMS calls are counted by the plugin (its
# "remote key calls" line at shutdown).
# Usage: bench/storage_kms.sh   (needs orthanc, dcmtk, python3 + pydicom, curl,
#                                /opt/moto-venv from tests/run.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}"
W=$(mktemp -d /var/tmp/pacsgate-kms-bench.XXXXXX)
MOTO_PID=""
SLOW_PID=""
trap '[ -n "$MOTO_PID" ] && kill "$MOTO_PID" 2>/dev/null; rm -rf "$W"' EXIT
say() { printf '==> %s\n' "$*" >&2; }

say "building: the plugin (release) and the storage tool (dev profile: only keygen runs it)"
(cd "$ROOT" && cargo build --release --quiet -p pacsgate-orthanc-storage && cargo build --quiet -p pacsgate-storage-cli)
REL="$CARGO_TARGET_DIR/release"
CLI="$CARGO_TARGET_DIR/debug/pacsgate-storage"
PLUGIN="$REL/libpacsgate_orthanc_storage.so"
gcc -shared -fPIC -O2 -o "$W/bind_lo.so" "$ROOT/deploy/bind_lo.c" -ldl
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchbenchbench

say "moto KMS server"
MOTO=$(free_port)
taskset -c 1 /opt/moto-venv/bin/moto_server -H 127.0.0.1 -p "$MOTO" > "$W/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$MOTO" && break; sleep 0.1; done
# A loopback proxy in front of moto that holds every chunk 5 ms each way: a 10 ms round
# trip, what an in-region AWS KMS endpoint typically costs (moto itself answers in ~1 ms).
SLOW=$(free_port)
python3 - "$SLOW" "$MOTO" > "$W/slow.log" 2>&1 <<'PY' &
import asyncio, sys
async def pump(r, w):
    try:
        while data := await r.read(65536):
            await asyncio.sleep(0.005); w.write(data); await w.drain()
    finally:
        w.close()
async def handle(cr, cw):
    ur, uw = await asyncio.open_connection("127.0.0.1", int(sys.argv[2]))
    await asyncio.gather(pump(cr, uw), pump(ur, cw), return_exceptions=True)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with server: await server.serve_forever()
asyncio.run(main())
PY
SLOW_PID=$!
trap '[ -n "$MOTO_PID" ] && kill "$MOTO_PID" 2>/dev/null; kill "$SLOW_PID" 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$SLOW" && break; sleep 0.1; done
ARN=$("$CLI" keygen --aws-kms --kms-region us-east-1 --kms-endpoint "http://127.0.0.1:$MOTO" | grep -o 'arn:aws:kms:[^";]*' | head -1)
(umask 077; openssl rand -base64 32 > "$W/master.key")

ORTHANC_PID=""
start_orthanc() {  # $1 = name, $2 = file|kms|kms-nocache|rtt10|rtt10-nocache
  local d="$W/$1" http dicom key extra="" endpoint="http://127.0.0.1:$MOTO"
  rm -rf "$d"; mkdir -p "$d/db"
  http=$(free_port); dicom=$(free_port)
  case "$2" in
    file) key="[1, \"$W/master.key\"]" ;;
    kms) key="[2, \"aws-kms:$ARN\"]" ;;
    kms-nocache) key="[2, \"aws-kms:$ARN\"]"; extra=", \"DataKeyReuseCount\": 1, \"DataKeyCacheSize\": 0" ;;
    rtt10) key="[2, \"aws-kms:$ARN\"]"; endpoint="http://127.0.0.1:$SLOW" ;;
    rtt10-nocache) key="[2, \"aws-kms:$ARN\"]"; endpoint="http://127.0.0.1:$SLOW"
      extra=", \"DataKeyReuseCount\": 1, \"DataKeyCacheSize\": 0" ;;
  esac
  cat > "$d/orthanc.json" <<JSON
{ "Name": "bench", "StorageDirectory": "$d/db", "IndexDirectory": "$d/db", "HttpPort": $http,
  "DicomPort": $dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false, "MaximumStorageCacheSize": 0, "HttpTimeout": 600,
  "Plugins": ["$PLUGIN"],
  "PacsgateStorage": {"StorageEncryption": {"MasterKey": $key,
     "Kms": {"Endpoint": "$endpoint", "Region": "us-east-1"} $extra},
     "Location": {"Type": "filesystem", "Root": "$d/db"}} }
JSON
  LD_PRELOAD="$W/bind_lo.so" taskset -c 0 /usr/sbin/Orthanc "$d/orthanc.json" > "$d/orthanc.log" 2>&1 &
  ORTHANC_PID=$!
  for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$http/system" && break; sleep 0.1; done
  HTTP=$http; DICOM=$dicom; LOG="$d/orthanc.log"
}
stop_orthanc() { kill "$ORTHANC_PID"; wait "$ORTHANC_PID" 2>/dev/null || true; }
calls() {  # 0 when the plugin logged no counters (key files only)
  { grep -o 'remote key calls: [0-9]* wrap, [0-9]* unwrap' "$LOG" || true; } | tail -1 | awk '{print $4+$6}'
}

say "generating 200 DICOM files"
mkdir -p "$W/files"
python3 - "$W/files" <<'PY'
import sys, pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
for i in range(200):
    ds.SOPInstanceUID = generate_uid(); ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(f"{sys.argv[1]}/f{i:03}.dcm")
PY
ingest() {  # $1 = file|kms|kms-nocache -> "seconds kms_calls" (best of 3; calls of that run)
  local best=999 best_calls=0
  for run in 1 2 3; do
    start_orthanc "ingest-$1-$run" "$1"
    local t0 t1 c
    t0=$(date +%s.%N)
    taskset -c 1 /usr/bin/storescu -aec ORTHANC 127.0.0.1 "$DICOM" "$W"/files/*.dcm
    t1=$(date +%s.%N)
    stop_orthanc
    c=$(calls); c=${c:-0}
    if python3 -c "import sys; sys.exit(0 if $t1 - $t0 < $best else 1)"; then
      best=$(python3 -c "print($t1 - $t0)"); best_calls=$c
    fi
  done
  echo "$best $best_calls"
}
say "ingest: key file"; read -r t_file c_file < <(ingest file)
say "ingest: KMS, default cache"; read -r t_kms c_kms < <(ingest kms)
say "ingest: KMS, caching off"; read -r t_off c_off < <(ingest kms-nocache)
say "ingest: KMS at 10 ms RTT, default cache"; read -r t_rtt c_rtt < <(ingest rtt10)
say "ingest: KMS at 10 ms RTT, caching off"; read -r t_rtt_off c_rtt_off < <(ingest rtt10-nocache)

readall() {  # $1 = file|kms-nocache -> "seconds kms_calls" for GET of all 200 files
  start_orthanc "read-$1" "$1"
  taskset -c 1 /usr/bin/storescu -aec ORTHANC 127.0.0.1 "$DICOM" "$W"/files/*.dcm
  local ids t0 t1
  ids=$(curl -sf "http://127.0.0.1:$HTTP/instances" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)))')
  stop_orthanc
  # Restart: an empty cache, so every read of the nocache run is an unwrap.
  local d="$W/read-$1"
  LD_PRELOAD="$W/bind_lo.so" taskset -c 0 /usr/sbin/Orthanc "$d/orthanc.json" > "$d/orthanc.log" 2>&1 &
  ORTHANC_PID=$!; LOG="$d/orthanc.log"
  for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$HTTP/system" && break; sleep 0.1; done
  t0=$(date +%s.%N)
  for id in $ids; do curl -sf -o /dev/null "http://127.0.0.1:$HTTP/instances/$id/file"; done
  t1=$(date +%s.%N)
  stop_orthanc
  echo "$(python3 -c "print($t1 - $t0)") $(calls)"
}
say "read 200: key file"; read -r r_file _ < <(readall file)
say "read 200: KMS, caching off"; read -r r_off rc_off < <(readall kms-nocache)
say "read 200: KMS at 10 ms RTT, caching off"; read -r r_rtt rc_rtt < <(readall rtt10-nocache)

python3 - "$t_file" "$t_kms" "$c_kms" "$t_off" "$c_off" "$r_file" "$r_off" "${rc_off:-0}" \
  "$t_rtt" "$c_rtt" "$t_rtt_off" "$c_rtt_off" "$r_rtt" "${rc_rtt:-0}" <<'PY'
import sys
tf, tk, ck, to, co, rf, ro, rco, tr, cr, tro, cro, rr, rcr = map(float, sys.argv[1:])
print("| measure | result | target |")
print("|---|---|---|")
print(f"| storescu 200 files, key file | {tf:.2f} s | |")
print(f"| storescu 200 files, AWS KMS (moto), default cache | {tk:.2f} s = {tf/tk:.2f}x key-file throughput, {ck:.0f} KMS calls ({ck/200:.3f} per object) | >= 0.9x |")
print(f"| storescu 200 files, AWS KMS (moto), caching off | {to:.2f} s = {tf/to:.2f}x key-file throughput, {co:.0f} KMS calls ({co/200:.2f} per object), +{(to-tf)/200*1000:.1f} ms per object | stated |")
print(f"| storescu 200 files, KMS at 10 ms RTT, default cache | {tr:.2f} s = {tf/tr:.2f}x key-file throughput, {cr:.0f} KMS calls | >= 0.9x |")
print(f"| storescu 200 files, KMS at 10 ms RTT, caching off | {tro:.2f} s = {tf/tro:.2f}x key-file throughput, {cro:.0f} KMS calls, +{(tro-tf)/200*1000:.1f} ms per object | stated |")
print(f"| GET 200 files (curl, fresh Orthanc), key file | {rf:.2f} s | |")
print(f"| GET 200 files, AWS KMS (moto), caching off | {ro:.2f} s = {rf/ro:.2f}x, {rco:.0f} KMS calls ({rco/200:.2f} per read), {(ro-rf)/200*1000:+.1f} ms per read | stated |")
print(f"| GET 200 files, KMS at 10 ms RTT, caching off | {rr:.2f} s = {rf/rr:.2f}x, {rcr:.0f} KMS calls, {(rr-rf)/200*1000:+.1f} ms per read | stated |")
PY

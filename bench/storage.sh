#!/usr/bin/env bash
# Encrypting storage benchmark, everything in one run (ratios are what count):
#   1. seal/open throughput of the v3 format on one core vs `openssl speed -evp aes-256-gcm`
#   2. Orthanc 1.10.1 ingest of 200 files with storescu: encrypting plugin vs built-in storage
#   3. a 1 GiB file stored and read back through the plugin: Orthanc's peak RSS with the
#      plugin minus its peak RSS with built-in storage for the same upload and download
# Usage: bench/storage.sh            (needs orthanc, dcmtk, python3 + pydicom, openssl, curl)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}"
W=$(mktemp -d /var/tmp/pacsgate-storage-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
say() { printf '==> %s\n' "$*" >&2; }

say "building (release): seal_bench and the plugin"
(cd "$ROOT" && cargo build --release --quiet -p pacsgate-storage --no-default-features --example seal_bench \
  && cargo build --release --quiet -p pacsgate-orthanc-storage)
REL="$CARGO_TARGET_DIR/release"
PLUGIN="$REL/libpacsgate_orthanc_storage.so"

# --- 1. seal/open vs OpenSSL, pinned to one core --------------------------------------------
say "openssl speed -evp aes-256-gcm (16 KiB blocks, one core)"
ossl_kbs=$(taskset -c 1 openssl speed -elapsed -seconds 3 -evp aes-256-gcm 2>/dev/null | awk '/^AES-256-GCM/ {print $NF}' | tr -d k)
ossl=$(python3 -c "print(round($ossl_kbs/1000))")
say "seal_bench (256 MiB in memory, best of 5, one core)"
# seal/open: one pass (object in memory); *_stream: through a Write / a 64 KiB BufReader.
read -r seal open seal_stream open_stream < <(taskset -c 1 "$REL/examples/seal_bench" 256 | awk '{print $2}' | paste -sd' ')

# --- Orthanc helpers --------------------------------------------------------------------------
gcc -shared -fPIC -O2 -o "$W/bind_lo.so" "$ROOT/deploy/bind_lo.c" -ldl
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ORTHANC_PID=""
start_orthanc() {  # $1 = name, $2 = "plugin" or "builtin"
  local d="$W/$1" http dicom extra=""
  rm -rf "$d"; mkdir -p "$d/db"
  http=$(free_port); dicom=$(free_port)
  if [ "$2" = plugin ]; then
    [ -f "$W/master.key" ] || (umask 077; openssl rand -base64 32 > "$W/master.key")
    extra=", \"Plugins\": [\"$PLUGIN\"], \"PacsgateStorage\": {\"StorageEncryption\": {\"MasterKey\": [1, \"$W/master.key\"]}, \"Location\": {\"Type\": \"filesystem\", \"Root\": \"$d/db\"}}"
  fi
  cat > "$d/orthanc.json" <<JSON
{ "Name": "bench", "StorageDirectory": "$d/db", "IndexDirectory": "$d/db", "HttpPort": $http,
  "DicomPort": $dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false, "MaximumStorageCacheSize": 0, "HttpTimeout": 600 $extra }
JSON
  LD_PRELOAD="$W/bind_lo.so" taskset -c 0 /usr/sbin/Orthanc "$d/orthanc.json" > "$d/orthanc.log" 2>&1 &
  ORTHANC_PID=$!
  for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$http/system" && break; sleep 0.1; done
  HTTP=$http; DICOM=$dicom
}
stop_orthanc() { kill "$ORTHANC_PID"; wait "$ORTHANC_PID" 2>/dev/null || true; }
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$ORTHANC_PID/status"; }

# --- 2. ingest of 200 files --------------------------------------------------------------------
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
ingest() {  # $1 = plugin|builtin -> seconds (best of 3)
  local best=999
  for run in 1 2 3; do
    start_orthanc "ingest-$1-$run" "$1"
    local t0 t1
    t0=$(date +%s.%N)
    taskset -c 1 /usr/bin/storescu -aec ORTHANC 127.0.0.1 "$DICOM" "$W"/files/*.dcm
    t1=$(date +%s.%N)
    stop_orthanc
    best=$(python3 -c "print(min($best, $t1 - $t0))")
  done
  echo "$best"
}
say "ingest: built-in storage"; t_builtin=$(ingest builtin)
say "ingest: encrypting plugin"; t_plugin=$(ingest plugin)

# --- 3. 1 GiB file -----------------------------------------------------------------------------
say "generating a 1 GiB DICOM file"
python3 "$ROOT/tests/support/bigdicom.py" "$W/big.dcm" 1024
# C-STORE makes Orthanc write its own file meta header, so compare the last 1 GiB (the
# pixel data) of what goes in and what comes back.
big_sha=$(tail -c 1073741824 "$W/big.dcm" | sha256sum)
bigfile() {  # $1 = plugin|builtin -> "peak_rss_growth_kib identical(yes/no)"
  start_orthanc "big-$1" "$1"
  local base id same
  base=$(hwm_kib)
  /usr/bin/storescu -aec ORTHANC 127.0.0.1 "$DICOM" "$W/big.dcm"
  id=$(curl -sf "http://127.0.0.1:$HTTP/instances" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0])')
  same=no
  [ "$(curl -sf "http://127.0.0.1:$HTTP/instances/$id/file" | tail -c 1073741824 | sha256sum)" = "$big_sha" ] && same=yes
  echo "$(( $(hwm_kib) - base )) $same"
  stop_orthanc
}
say "1 GiB: built-in storage"; read -r rss_builtin same_builtin < <(bigfile builtin)
say "1 GiB: encrypting plugin"; read -r rss_plugin same_plugin < <(bigfile plugin)

python3 - "$ossl" "$seal" "$open" "$seal_stream" "$open_stream" "$t_builtin" "$t_plugin" "$rss_builtin" "$rss_plugin" "$same_plugin" <<'PY'
import sys
ossl, seal, opn, sseal, sopn, tb, tp, rb, rp, same = sys.argv[1:]
ossl, seal, opn, sseal, sopn, tb, tp, rb, rp = map(float, (ossl, seal, opn, sseal, sopn, tb, tp, rb, rp))
print("| measure | result | target |")
print("|---|---|---|")
print(f"| openssl speed -evp aes-256-gcm, 16 KiB, 1 core | {ossl:.0f} MB/s | |")
print(f"| v3 seal (seal_to_slice), 256 MiB, 64 KiB segments, 1 core | {seal:.0f} MB/s = {seal/ossl:.2f}x OpenSSL | >= 0.85x |")
print(f"| v3 open (open_stream from memory), 1 core | {opn:.0f} MB/s = {opn/ossl:.2f}x OpenSSL | >= 0.85x |")
print(f"| v3 seal through a Write (seal_slice), 1 core | {sseal:.0f} MB/s = {sseal/ossl:.2f}x OpenSSL | |")
print(f"| v3 open through a 64 KiB BufReader (open_stream), 1 core | {sopn:.0f} MB/s = {sopn/ossl:.2f}x OpenSSL | |")
print(f"| storescu 200 files, built-in storage | {tb:.2f} s | |")
print(f"| storescu 200 files, encrypting plugin | {tp:.2f} s = {tb/tp:.2f}x built-in throughput | >= 0.9x |")
print(f"| 1 GiB store + read back, Orthanc peak RSS growth, built-in | {rb/1024:.0f} MiB | |")
print(f"| 1 GiB store + read back, peak RSS growth, plugin | {rp/1024:.0f} MiB (+{(rp-rb)/1024:.0f} MiB), pixel data identical: {same} | < +64 MiB |")
PY

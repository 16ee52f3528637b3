#!/usr/bin/env bash
# C-STORE throughput through TLS, side by side in one run: pacsgate with the DICOM policy
# on (modality bound to its certificate, per-command checks) and off (no modalities), HAProxy
# (mode tcp, ssl) and storescu -> storescp directly without TLS. storescu sends FILES
# Secondary Capture files of KIB KiB in one association; targets are interleaved run by
# run; medians of RUNS. Servers are pinned to SERVER_CPU, storescu to CLIENT_CPU.
#
#   bench/dicom_policy.sh                 # FILES=200 KIB=512 RUNS=5
#   RUNS=9 FILES=400 bench/dicom_policy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}"
FILES=${FILES:-200} KIB=${KIB:-512} RUNS=${RUNS:-5}
SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
command -v haproxy >/dev/null || { $SUDO apt-get update -qq; $SUDO apt-get install -y -qq haproxy; }
cargo build --release -q
BIN="$CARGO_TARGET_DIR/release/pacsgate"
HAPROXY=$(command -v haproxy)

work=$(mktemp -d /tmp/pacsgate-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# PKI: RSA (dcmtk 3.6.7 needs it under TLS 1.2), a server for 127.0.0.1 and a client.
( cd "$work"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null
  for who in server BENCHSCU; do
    openssl req -newkey rsa:2048 -nodes -keyout "$who.key" -out "$who.csr" -subj "/CN=$who" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > ext.cnf
    openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out "$who.pem" -extfile ext.cnf 2>/dev/null
  done
  cat server.pem server.key > server-haproxy.pem )
FP=$(openssl x509 -in "$work/BENCHSCU.pem" -outform DER | sha256sum | cut -d' ' -f1)

# Data: FILES uncompressed Secondary Capture images of about KIB KiB each.
python3 - "$work/data" "$FILES" "$KIB" <<'PY'
import os, sys
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
out, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out)
pixels = os.urandom(kib * 1024)
for i in range(n):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset(); ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID; ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = "BENCH"; ds.Modality = "OT"
    ds.StudyInstanceUID = generate_uid(); ds.SeriesInstanceUID = generate_uid()
    ds.Rows, ds.Columns = kib, 1024
    ds.SamplesPerPixel = 1; ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8; ds.HighBit = 7; ds.PixelRepresentation = 0
    ds.PixelData = pixels
    ds.save_as(os.path.join(out, "img%04d.dcm" % i), enforce_file_format=True)
PY
BYTES=$(du -cb "$work"/data/*.dcm | tail -1 | cut -f1)

gcc -shared -fPIC -O2 -o "$work/bind_lo.so" deploy/bind_lo.c -ldl
SCP=$(free_port)
TCP_NODELAY=1 LD_PRELOAD="$work/bind_lo.so" taskset -c "$SERVER_CPU" /usr/bin/storescp --ignore -aet STORESCP "$SCP" >"$work/scp.log" 2>&1 &
pids+=($!); wait_port "$SCP"

start_pacsgate() { # name policy-lines
  local port; port=$(free_port)
  cat >"$work/$1.toml" <<TOML
[tls]
cert = "$work/server.pem"
key = "$work/server.key"
client_ca = "$work/ca.pem"
watch = false
[http]
enabled = false
[dicom]
listen = "127.0.0.1:$port"
upstream = "127.0.0.1:$SCP"
$2
[log]
level = "warn"
TOML
  taskset -c "$SERVER_CPU" "$BIN" run --config "$work/$1.toml" >"$work/$1.log" 2>&1 &
  pids+=($!); eval "PID_$1=$!"; eval "PORT_$1=$port"; wait_port "$port"
}
start_pacsgate off ""
start_pacsgate on "called_aet = \"STORESCP\"
always_allow_echo = false
always_allow_store = false
[dicom.modalities.bench]
aet = \"BENCHSCU\"
certificate = \"sha256:$FP\"
allow = [\"echo\", \"store\"]"
PORT_haproxy=$(free_port)
cat >"$work/haproxy.cfg" <<CFG
global
    nbthread 1
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen dicom_tls
    mode tcp
    bind 127.0.0.1:$PORT_haproxy ssl crt $work/server-haproxy.pem
    server s1 127.0.0.1:$SCP
CFG
taskset -c "$SERVER_CPU" "$HAPROXY" -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!); PID_haproxy=$!; wait_port "$PORT_haproxy"
PORT_plain=$SCP; PID_plain=""

cpu_ticks() { [ -n "$1" ] && awk '{print $14+$15}' "/proc/$1/stat" || echo 0; }
targets=(on off haproxy plain)
declare -A mbs cpu
for run in $(seq "$RUNS"); do
  for t in "${targets[@]}"; do
    port_var="PORT_$t" pid_var="PID_$t"
    tls=(+tls "$work/BENCHSCU.key" "$work/BENCHSCU.pem" -pw +cf "$work/ca.pem")
    [ "$t" = plain ] && tls=()
    before=$(cpu_ticks "${!pid_var}")
    t0=$(date +%s.%N)
    TCP_NODELAY=1 taskset -c "$CLIENT_CPU" /usr/bin/storescu -aet BENCHSCU -aec STORESCP "${tls[@]}" \
      127.0.0.1 "${!port_var}" "$work"/data/*.dcm >"$work/scu-$t.log" 2>&1 \
      || { echo "storescu through $t failed:"; tail -5 "$work/scu-$t.log"; exit 1; }
    t1=$(date +%s.%N)
    after=$(cpu_ticks "${!pid_var}")
    mbs[$t]+="$(python3 -c "print($BYTES/($t1-$t0)/1e6)") "
    cpu[$t]+="$(python3 -c "print(($after-$before)/$(getconf CLK_TCK))") "
  done
done
median() { python3 -c 'import statistics,sys; print("%.0f" % statistics.median(map(float, sys.argv[1:])))' $1; }
median2() { python3 -c 'import statistics,sys; print("%.3f" % statistics.median(map(float, sys.argv[1:])))' $1; }
on=$(median "${mbs[on]}"); off=$(median "${mbs[off]}"); ha=$(median "${mbs[haproxy]}")
# MB per second of the terminator's own CPU: what it could relay on one core, robust to
# a load generator slowed by other processes on a shared host.
per_cpu() { python3 -c "print('%.0f' % ($BYTES / 1e6 / max(float('$(median2 "${cpu[$1]}")'), 0.01)))"; }
echo
echo "C-STORE, $FILES files, $((BYTES / 1000000)) MB per run, one association, medians of $RUNS runs;"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| target | MB/s (median) | runs (MB/s) | server CPU s per run | MB per server CPU s |"
echo "|---|---|---|---|---|"
for t in "${targets[@]}"; do
  label=$t; case $t in on) label="pacsgate, policy on";; off) label="pacsgate, policy off";; haproxy) label="HAProxy (mode tcp, ssl)";; plain) label="direct, no TLS (limit)";; esac
  if [ "$t" = plain ]; then c="-" e="-"; else c=$(median2 "${cpu[$t]}") e=$(per_cpu "$t"); fi
  echo "| $label | $(median "${mbs[$t]}") | $(printf '%.0f ' ${mbs[$t]}) | $c | $e |"
done
echo
python3 -c "print('MB/s: policy on / off %.2fx, policy on / HAProxy %.2fx' % ($on/$off, $on/$ha))"
python3 -c "print('MB per CPU s: policy on / off %.2fx, policy on / HAProxy %.2fx' % ($(per_cpu on)/$(per_cpu off), $(per_cpu on)/$(per_cpu haproxy)))"

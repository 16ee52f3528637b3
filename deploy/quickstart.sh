#!/usr/bin/env bash
# One command: pacsgate in front of a real local Orthanc on this machine.
#   HTTPS      https://<host>:443   -> Orthanc REST on 127.0.0.1:8042
#   DICOM TLS  <host>:11112         -> Orthanc DICOM on 127.0.0.1:4242
# Installs what is missing (Debian: orthanc, gcc), builds pacsgate, generates self-signed
# certificates on first start (certs/), keeps Orthanc's ports on loopback, and runs both in
# the foreground until Ctrl-C. State lives in .quickstart/ (Orthanc's database).
# Orthanc stores every file through the encrypting storage plugin, with a master key
# generated on first start (.quickstart/master-1.key); files from earlier runs are
# migrated to the encrypted format first.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${PACSGATE_STATE:-$ROOT/.quickstart}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
say() { printf '==> %s\n' "$*"; }

missing=()
for pkg in orthanc gcc libc6-dev curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo is missing: install Rust from https://rustup.rs" >&2; exit 1; }

for port in 8042 4242; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use (a system Orthanc? stop it: service orthanc stop)" >&2
    exit 1
  fi
done

say "building pacsgate and the Orthanc storage plugin (release)"
(cd "$ROOT" && cargo build --release --quiet -p pacsgate -p pacsgate-orthanc-storage)
BIN="$CARGO_TARGET_DIR/release/pacsgate"
PLUGIN="$CARGO_TARGET_DIR/release/libpacsgate_orthanc_storage.so"

mkdir -p "$STATE/orthanc-db"
KEY="$STATE/master-1.key"
[ -f "$KEY" ] || "$BIN" storage keygen --out "$KEY"
"$BIN" storage migrate --root "$STATE/orthanc-db" --key "1:$KEY"
gcc -shared -fPIC -O2 -o "$STATE/bind_lo.so" "$ROOT/deploy/bind_lo.c" -ldl
cat > "$STATE/orthanc.json" <<JSON
{
  "Name": "pacsgate-quickstart",
  "StorageDirectory": "$STATE/orthanc-db",
  "IndexDirectory": "$STATE/orthanc-db",
  "HttpPort": 8042,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomAet": "ORTHANC",
  "DicomPort": 4242,
  "DicomCheckCalledAet": true,
  "DicomCheckModalityHost": false,
  "WebDavEnabled": false,
  "MaximumStorageCacheSize": 0,
  "Plugins": ["$PLUGIN"],
  "PacsgateStorage": {
    "StorageEncryption": { "Enable": true, "MasterKey": [1, "$KEY"] },
    "Location": { "Type": "filesystem", "Root": "$STATE/orthanc-db" }
  }
}
JSON

say "starting Orthanc on 127.0.0.1:8042 (REST) and 127.0.0.1:4242 (DICOM)"
LD_PRELOAD="$STATE/bind_lo.so" /usr/sbin/Orthanc "$STATE/orthanc.json" > "$STATE/orthanc.log" 2>&1 &
ORTHANC_PID=$!
trap 'kill $ORTHANC_PID 2>/dev/null; wait $ORTHANC_PID 2>/dev/null' EXIT
for _ in $(seq 300); do
  curl -sf -o /dev/null http://127.0.0.1:8042/system && break
  kill -0 $ORTHANC_PID 2>/dev/null || { cat "$STATE/orthanc.log" >&2; exit 1; }
  sleep 0.1
done
curl -s http://127.0.0.1:8042/system | grep -Eq '"StorageAreaPlugin" *: *"/' \
  || { echo "Orthanc started without the storage plugin" >&2; exit 1; }

"$BIN" check --config "$ROOT/config.toml"
cat <<MSG
==> starting pacsgate (Ctrl-C stops both). Try, from another terminal:
    curl --cacert $ROOT/certs/server.crt https://localhost/system
    /usr/bin/echoscu -v -aec ORTHANC +tla +cf $ROOT/certs/server.crt localhost 11112
MSG
"$BIN" run --config "$ROOT/config.toml" &
GATEWAY_PID=$!
# Ctrl-C or SIGTERM: let pacsgate drain, then stop Orthanc (the EXIT trap).
trap 'kill -TERM $GATEWAY_PID 2>/dev/null' INT TERM
wait $GATEWAY_PID || true
wait $GATEWAY_PID 2>/dev/null || true

#!/usr/bin/env bash
# One command: pacsgate in front of a real local Orthanc on this machine.
#   HTTPS      https://<host>:443   -> Orthanc REST on 127.0.0.1:8042
#   DICOM TLS  <host>:11112         -> Orthanc DICOM on 127.0.0.1:4242
# Installs what is missing (Debian: orthanc, gcc), builds pacsgate, generates self-signed
# certificates on first start, keeps Orthanc's ports on loopback, and runs both in the
# foreground until Ctrl-C. State lives in .quickstart/ (Orthanc's database, certificates).
# Nobody gets in without credentials:
# - the gateway runs config.toml (authentication = "required", no users), so it generates
#   an "admin" account on first start (.quickstart/certs/admin.password, 0600);
# - Orthanc runs with AuthenticationEnabled and a random account only the gateway holds
#   (.quickstart/orthanc.credentials, http.upstream_credentials_file), so a request that
#   Orthanc makes to itself on a caller's behalf (a peer pointing at 127.0.0.1) is
#   refused by Orthanc too.
# Orthanc stores every file through the encrypting storage plugin, with a master key
# generated on first start (.quickstart/master-1.key); files from earlier runs are
# migrated to the encrypted format first.
# Environment (tests): PACSGATE_STATE, PACSGATE_BIN + PACSGATE_PLUGIN (skip the build),
# QUICKSTART_HTTPS_PORT, QUICKSTART_DICOM_PORT, QUICKSTART_ORTHANC_HTTP_PORT,
# QUICKSTART_ORTHANC_DICOM_PORT.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${PACSGATE_STATE:-$ROOT/.quickstart}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}"
HTTPS_PORT=${QUICKSTART_HTTPS_PORT:-443}
DICOM_PORT=${QUICKSTART_DICOM_PORT:-11112}
ORTHANC_HTTP=${QUICKSTART_ORTHANC_HTTP_PORT:-8042}
ORTHANC_DICOM=${QUICKSTART_ORTHANC_DICOM_PORT:-4242}
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
for port in "$ORTHANC_HTTP" "$ORTHANC_DICOM"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use (a system Orthanc? stop it: service orthanc stop)" >&2
    exit 1
  fi
done

if [ -n "${PACSGATE_BIN:-}" ] && [ -n "${PACSGATE_PLUGIN:-}" ]; then
  BIN=$PACSGATE_BIN
  PLUGIN=$PACSGATE_PLUGIN
else
  command -v cargo >/dev/null || { echo "cargo is missing: install Rust from https://rustup.rs" >&2; exit 1; }
  say "building pacsgate and the Orthanc storage plugin (release)"
  (cd "$ROOT" && cargo build --release --quiet -p pacsgate -p pacsgate-storage-cli -p pacsgate-orthanc-storage)
  BIN="$CARGO_TARGET_DIR/release/pacsgate"
  PLUGIN="$CARGO_TARGET_DIR/release/libpacsgate_orthanc_storage.so"
fi

umask 077
mkdir -p "$STATE/orthanc-db"
# Orthanc's own account, known only to the gateway (and to this script's health check).
CREDS="$STATE/orthanc.credentials"
if [ ! -s "$CREDS" ]; then
  printf 'pacsgate:%s\n' "$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')" > "$CREDS"
fi
chmod 600 "$CREDS"
ORTHANC_PW=$(head -n 1 "$CREDS" | cut -d: -f2-)
# curl reads the account from a file, not its command line (visible in ps).
printf 'user = "pacsgate:%s"\n' "$ORTHANC_PW" > "$STATE/orthanc.curlrc"
KEY="$STATE/master-1.key"
[ -f "$KEY" ] || "$BIN" storage keygen --out "$KEY"
"$BIN" storage migrate --root "$STATE/orthanc-db" --key "1:$KEY"
gcc -shared -fPIC -O2 -o "$STATE/bind_lo.so" "$ROOT/deploy/bind_lo.c" -ldl
cat > "$STATE/orthanc.json" <<JSON
{
  "Name": "pacsgate-quickstart",
  "StorageDirectory": "$STATE/orthanc-db",
  "IndexDirectory": "$STATE/orthanc-db",
  "HttpPort": $ORTHANC_HTTP,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": true,
  "RegisteredUsers": { "pacsgate": "$ORTHANC_PW" },
  "DicomAet": "ORTHANC",
  "DicomPort": $ORTHANC_DICOM,
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

say "starting Orthanc on 127.0.0.1:$ORTHANC_HTTP (REST) and 127.0.0.1:$ORTHANC_DICOM (DICOM), authentication on"
LD_PRELOAD="$STATE/bind_lo.so" /usr/sbin/Orthanc "$STATE/orthanc.json" > "$STATE/orthanc.log" 2>&1 &
ORTHANC_PID=$!
trap 'kill $ORTHANC_PID 2>/dev/null; wait $ORTHANC_PID 2>/dev/null' EXIT
for _ in $(seq 300); do
  curl -sf -K "$STATE/orthanc.curlrc" -o /dev/null "http://127.0.0.1:$ORTHANC_HTTP/system" && break
  kill -0 $ORTHANC_PID 2>/dev/null || { cat "$STATE/orthanc.log" >&2; exit 1; }
  sleep 0.1
done
curl -s -K "$STATE/orthanc.curlrc" "http://127.0.0.1:$ORTHANC_HTTP/system" | grep -Eq '"StorageAreaPlugin" *: *"/' \
  || { echo "Orthanc started without the storage plugin" >&2; exit 1; }

# The gateway's configuration: config.toml as shipped, plus Orthanc's account (and the
# ports when overridden). Relative paths resolve in $STATE: certificates in $STATE/certs.
sed -e 's|^# upstream_credentials_file = .*|upstream_credentials_file = "orthanc.credentials"|' \
    -e "s|^listen = \"0.0.0.0:443\"|listen = \"0.0.0.0:$HTTPS_PORT\"|" \
    -e "s|^listen = \"0.0.0.0:11112\"|listen = \"0.0.0.0:$DICOM_PORT\"|" \
    -e "s|^upstream = \"http://127.0.0.1:8042\"|upstream = \"http://127.0.0.1:$ORTHANC_HTTP\"|" \
    -e "s|^upstream = \"127.0.0.1:4242\"|upstream = \"127.0.0.1:$ORTHANC_DICOM\"|" \
    "$ROOT/config.toml" > "$STATE/pacsgate.toml"
grep -q '^upstream_credentials_file = "orthanc.credentials"' "$STATE/pacsgate.toml" \
  || { echo "config.toml no longer has the upstream_credentials_file line" >&2; exit 1; }

"$BIN" check --config "$STATE/pacsgate.toml"
say "starting pacsgate (Ctrl-C stops both)"
"$BIN" run --config "$STATE/pacsgate.toml" &
GATEWAY_PID=$!
# Ctrl-C or SIGTERM: let pacsgate drain, then stop Orthanc (the EXIT trap).
trap 'kill -TERM $GATEWAY_PID 2>/dev/null' INT TERM
CERT="$STATE/certs/server.crt"
PORT_SUFFIX=""
[ "$HTTPS_PORT" = 443 ] || PORT_SUFFIX=":$HTTPS_PORT"
for _ in $(seq 600); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CERT" "https://localhost$PORT_SUFFIX/" 2>/dev/null || true)
  [ "$code" != "000" ] && [ -n "$code" ] && break
  kill -0 $GATEWAY_PID 2>/dev/null || { wait $GATEWAY_PID; exit 1; }
  sleep 0.1
done
ADMIN=$(head -n 1 "$STATE/certs/admin.password")
cat <<MSG
==> pacsgate is ready. The HTTPS account (also in $STATE/certs/admin.password):
    ${ADMIN}
    Try, from another terminal:
    curl --cacert $CERT -u '${ADMIN}' https://localhost$PORT_SUFFIX/patients
    curl --cacert $CERT https://localhost$PORT_SUFFIX/patients     # 401: no credentials
    /usr/bin/echoscu -v -aec ORTHANC +tla +cf $CERT localhost $DICOM_PORT
MSG
wait $GATEWAY_PID || true
wait $GATEWAY_PID 2>/dev/null || true

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
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

# A TCP listener on this port on any address (ss from iproute2; bash's /dev/tcp as the
# fallback only sees listeners that accept on 127.0.0.1).
port_in_use() {
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
port_owner() {
  command -v ss >/dev/null 2>&1 || return 0
  $SUDO ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 | sed 's/users:(("\([^"]*\)",pid=\([0-9]*\)/\1 (pid \2)/'
}
# Debian's Orthanc service: systemd's view when systemd runs, else the init script's pid
# file, else an Orthanc started from Debian's configuration directory by anything else.
system_orthanc_pids() {
  local pid
  if [ -s /run/orthanc.pid ]; then
    pid=$(cat /run/orthanc.pid)
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = /usr/sbin/Orthanc ] && echo "$pid"
  fi
  command -v pgrep >/dev/null 2>&1 && pgrep -f '^/usr/sbin/Orthanc .*/etc/orthanc' || true
}
# Processes listening on this TCP port (ss -p shows other users' sockets only to root).
port_pids() {
  command -v ss >/dev/null 2>&1 || return 0
  $SUDO ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}
system_orthanc_all_pids() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl show -p MainPID --value orthanc.service 2>/dev/null | grep -v '^0$' || true
  fi
  system_orthanc_pids
}
system_orthanc_running() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl is-active --quiet orthanc.service && return 0
  fi
  [ -n "$(system_orthanc_pids)" ]
}
# Without systemd, only the processes found above are signalled: Debian's init script
# ends with start-stop-daemon --exec /usr/sbin/Orthanc, which would also kill every other
# Orthanc on the machine (test instances, other users' PACS).
stop_system_orthanc() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl stop orthanc.service || true
  else
    # shellcheck disable=SC2046
    $SUDO kill -TERM $(system_orthanc_pids | sort -u) 2>/dev/null || true
    $SUDO rm -f /run/orthanc.pid
  fi
  # Orthanc flushes its index on SIGTERM; wait (bounded) for it, the port check below
  # names anything that remains.
  for _ in $(seq 300); do
    system_orthanc_running || break
    sleep 0.1
  done
}
disable_system_orthanc() {
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --quiet orthanc.service 2>/dev/null || true
  fi
  if command -v update-rc.d >/dev/null 2>&1 && [ -e /etc/init.d/orthanc ]; then
    $SUDO update-rc.d orthanc disable >/dev/null 2>&1 || true
  fi
}

# Everything that can stop the quickstart is checked before the build: Rust, the ports
# (ours and Orthanc's), a running Debian orthanc.service.
RUST_MIN=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
# shellcheck source=deploy/require-rust.sh
. "$ROOT/deploy/require-rust.sh"
[ -n "${PACSGATE_BIN:-}" ] && [ -n "${PACSGATE_PLUGIN:-}" ] || require_rust "$RUST_MIN"

# Ports below net.ipv4.ip_unprivileged_port_start (443) need root or CAP_NET_BIND_SERVICE.
if [ "$(id -u)" -ne 0 ]; then
  unpriv=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start 2>/dev/null || echo 1024)
  for port in "$HTTPS_PORT" "$DICOM_PORT"; do
    [ "$port" -ge "$unpriv" ] || die "port $port needs root: run the quickstart as root (sudo deploy/quickstart.sh) or set QUICKSTART_HTTPS_PORT / QUICKSTART_DICOM_PORT to ports >= $unpriv"
  done
fi

missing=()
# ca-certificates: cargo fetches crates from crates.io over TLS (a minimal Debian lacks it).
for pkg in orthanc dcmtk gcc libc6-dev curl ca-certificates iproute2 procps; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ -z "$SUDO" ] || command -v sudo >/dev/null || die "${missing[*]} must be installed: run the quickstart as root (sudo is missing)"
  say "installing ${missing[*]}"
  # Debian's orthanc package starts and enables orthanc.service: Debian's defaults, DICOM
  # on 0.0.0.0:4242 that stores whatever arrives, outside the gateway. The quickstart runs
  # its own Orthanc on loopback, so the packaged one must not start: policy-rc.d (exit 101
  # = action forbidden; invoke-rc.d(8), init-system-helpers' README.policy-rc.d; honoured
  # by deb-systemd-invoke too) denies starts during this install, unless the administrator
  # has a policy-rc.d of their own.
  POLICY=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$POLICY" ]; then
    own_policy=1
    printf '#!/bin/sh\n# deploy/quickstart.sh: no service starts during its apt-get install\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ -n "$own_policy" ]; then
    $SUDO rm -f "$POLICY"
    trap - EXIT
  fi
  case " ${missing[*]} " in *" orthanc "*)
    disable_system_orthanc
    say "installed Debian's orthanc without starting it and disabled orthanc.service at boot (the quickstart runs its own Orthanc on 127.0.0.1)" ;;
  esac
fi

# A Debian orthanc.service already running (DICOM on 0.0.0.0:4242 by default) holds the
# ports the quickstart's Orthanc needs and is reachable from the network without the
# gateway: stop it and keep it from starting at boot, and say how to undo that.
if system_orthanc_running; then
  conflict=""
  ours=" $(system_orthanc_all_pids | sort -u | tr '\n' ' ') "
  for port in "$HTTPS_PORT" "$DICOM_PORT" "$ORTHANC_HTTP" "$ORTHANC_DICOM"; do
    for pid in $(port_pids "$port"); do
      case "$ours" in *" $pid "*) conflict="$conflict $port"; break ;; esac
    done
  done
  if [ -n "$conflict" ]; then
    say "Debian's orthanc.service is running (DICOM on all interfaces, outside the gateway) and holds port(s)$conflict: stopping it and disabling it at boot (undo: systemctl enable --now orthanc)"
    stop_system_orthanc
    disable_system_orthanc
  else
    echo "warning: Debian's orthanc.service is running beside the quickstart; with Debian's defaults its DICOM port accepts stores from the network without the gateway (stop it: systemctl disable --now orthanc)" >&2
  fi
fi

for port in "$HTTPS_PORT" "$DICOM_PORT" "$ORTHANC_HTTP" "$ORTHANC_DICOM"; do
  if port_in_use "$port"; then
    owner=$(port_owner "$port")
    die "port $port is in use${owner:+ by $owner}: free it, or choose other ports with QUICKSTART_HTTPS_PORT, QUICKSTART_DICOM_PORT, QUICKSTART_ORTHANC_HTTP_PORT, QUICKSTART_ORTHANC_DICOM_PORT"
  fi
done

if [ -n "${PACSGATE_BIN:-}" ] && [ -n "${PACSGATE_PLUGIN:-}" ]; then
  BIN=$PACSGATE_BIN
  PLUGIN=$PACSGATE_PLUGIN
else
  say "building pacsgate and the Orthanc storage plugin (release; the first build takes 10-30 minutes)"
  (cd "$ROOT" && cargo build --release -p pacsgate -p pacsgate-storage-cli -p pacsgate-orthanc-storage)
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

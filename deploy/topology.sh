#!/usr/bin/env bash
# The two-node topology of issue 12 (Orthweb, seeds.md section 4) on one machine, as
# processes on loopback addresses:
#
#   clients -> HAProxy (TCP) 127.0.0.10:443 / :11112
#                -> pacsgate A 127.0.0.11 -> Orthanc A (127.0.0.1, ports of node A)
#                -> pacsgate B 127.0.0.12 -> Orthanc B (127.0.0.1, ports of node B)
#   both Orthanc nodes: index in PostgreSQL 127.0.0.20 (Debian's orthanc-postgresql, Lock
#   off), files encrypted by pacsgate's storage plugin in S3 (SeaweedFS, 127.0.0.21);
#   Redis on 127.0.0.22 for the gateways' shared limits ([cluster], TOPOLOGY_CLUSTER=1).
#
#   deploy/topology.sh up [DIR]      start whatever is not running (default DIR: a new
#                                    directory under /var/tmp, printed); waits until ready
#   deploy/topology.sh down DIR      stop everything it started (recorded pids), in order
#   deploy/topology.sh status DIR    one line per component
#
# Everything lives under DIR: configs, logs (DIR/log), pids (DIR/run), data, and the
# generated secrets (DIR/secrets, 0600): Orthanc's REST account (only the gateways hold
# it; Orthanc keeps AuthenticationEnabled, as the quickstart does), the HTTPS account
# `admin` (DIR/secrets/admin.password), the storage master key, database, S3 and Redis
# passwords, the gateways' certificate. DIR/topology.env records the ports of the first
# `up`; later commands read them from there.
#
# Environment (first `up` only; tests pass free ports):
#   TOPOLOGY_LB_ADDR 127.0.0.10, TOPOLOGY_HTTPS_PORT 443, TOPOLOGY_DICOM_PORT 11112
#   TOPOLOGY_GW_A_ADDR 127.0.0.11, TOPOLOGY_GW_B_ADDR 127.0.0.12,
#   TOPOLOGY_GW_HTTPS_PORT 8443, TOPOLOGY_GW_DICOM_PORT 11112, TOPOLOGY_GW_ADMIN_PORT 9090
#   TOPOLOGY_ORTHANC_A_HTTP 8042, _A_DICOM 4242, _B_HTTP 8043, _B_DICOM 4243
#   TOPOLOGY_PG_ADDR 127.0.0.20, TOPOLOGY_PG_PORT 5432
#   TOPOLOGY_S3_ADDR 127.0.0.21, TOPOLOGY_S3_PORT 8333, TOPOLOGY_WEED_MASTER 9333,
#     TOPOLOGY_WEED_VOLUME 8080, TOPOLOGY_WEED_FILER 8888 (SeaweedFS also uses each + 10000)
#   TOPOLOGY_REDIS_ADDR 127.0.0.22, TOPOLOGY_REDIS_PORT 6379
#   TOPOLOGY_CLUSTER=1   gateways share limits through Redis ([cluster] redis = ...); 0: each
#                        replica keeps its own
#   TOPOLOGY_PROXY=1     HAProxy sends PROXY v2, gateways accept it from TOPOLOGY_LB_ADDR
#                        only; 0: the gateways see HAProxy's address as the client
#   TOPOLOGY_HTTP_RATE_LIMITS   TOML lines for the gateways' [http.rate_limits]
#                        (e.g. 'per_ip = "20/s burst 20"'); none: the defaults
#   TOPOLOGY_GATEWAY_EXTRA   TOML appended to both gateways' configs (more [users.*],
#                        [[http.rules]] after the admin rule)
#   PACSGATE_BIN, PACSGATE_PLUGIN   use these instead of `cargo build --release`
#   WEED   the SeaweedFS binary (default /opt/seaweed-venv/bin/weed, else weed on PATH)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
PG_INDEX=/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so
# Start order; `down` goes backwards.
COMPONENTS="postgres s3 redis orthanc-a orthanc-b gateway-a gateway-b haproxy"

die() { printf 'topology: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*"; }

cmd=${1:-}
DIR=${2:-}
case "$cmd" in
  up) [ -n "$DIR" ] || DIR=$(mktemp -d /var/tmp/pacsgate-topology.XXXXXX) ;;
  down|status) [ -n "$DIR" ] || die "usage: $0 $cmd DIR" ;;
  *) die "usage: $0 up [DIR] | down DIR | status DIR" ;;
esac
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
RUN=$DIR/run
LOG=$DIR/log

# --- pids: recorded per component; a pid counts only while /proc says it is still the
# program we started (a recycled pid is never signalled).
pid_of() { [ -s "$RUN/$1.pid" ] && head -n 1 "$RUN/$1.pid" || true; }
exe_of() { [ -s "$RUN/$1.exe" ] && cat "$RUN/$1.exe" || true; }
alive() {
  local pid exe
  pid=$(pid_of "$1"); exe=$(exe_of "$1")
  [ -n "$pid" ] && [ -e "/proc/$pid" ] || return 1
  [ -z "$exe" ] || [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ]
}
# Wait (bounded) until a condition holds, polling; fail with the component's log.
wait_for() {
  local what=$1 name=$2 tries=$3; shift 3
  for _ in $(seq "$tries"); do
    "$@" && return 0
    [ -z "$name" ] || alive "$name" || { tail -n 30 "$LOG/$name.log" >&2; die "$name exited while waiting for $what"; }
    sleep 0.1
  done
  [ -z "$name" ] || tail -n 30 "$LOG/$name.log" >&2
  die "timed out waiting for $what"
}
# Start a program in the background in its own session, detached from our stdio (a
# caller reading our output must not wait for the daemons), and record its pid.
spawn() {
  local name=$1 pid exe; shift
  exe=$(readlink -f "$(command -v "$1")")
  setsid "$@" < /dev/null >> "$LOG/$name.log" 2>&1 &
  pid=$!
  echo "$pid" > "$RUN/$name.pid"
  echo "$exe" > "$RUN/$name.exe"
  # Until the forked shell has exec'd the program, /proc/PID/exe is still bash: wait for
  # the exec (or the exit), or alive() would take the pid for someone else's.
  for _ in $(seq 100); do
    [ -e "/proc/$pid" ] || break
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] && break
    sleep 0.05
  done
}
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

stop_one() {
  local name=$1 pid grace=300
  alive "$name" || { rm -f "$RUN/$name.pid"; return 0; }
  pid=$(pid_of "$name")
  # SeaweedFS ignores SIGTERM (scaleout.md): a short grace, then SIGKILL.
  [ "$name" = s3 ] && grace=20
  if [ "$name" = postgres ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$DIR/postgres/data" -m fast -w -t 30 stop >> "$LOG/postgres.log" 2>&1 || true
  else
    kill -TERM "$pid" 2>/dev/null || true
  fi
  for _ in $(seq "$grace"); do alive "$name" || break; sleep 0.1; done
  if alive "$name"; then
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$name" || break; sleep 0.1; done
  fi
  alive "$name" && die "$name (pid $pid) did not stop"
  rm -f "$RUN/$name.pid"
}

# PostgreSQL refuses to run as root: as root, its files belong to the `postgres` user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "$cmd" = down ] || [ "$cmd" = status ]; then
  [ -f "$DIR/topology.env" ] || die "$DIR has no topology.env: not a topology directory"
  # shellcheck source=/dev/null
  . "$DIR/topology.env"
  if [ "$cmd" = down ]; then
    for name in $(echo "$COMPONENTS" | tr ' ' '\n' | tac); do stop_one "$name"; done
    say "stopped; state kept in $DIR"
  else
    for name in $COMPONENTS; do
      if alive "$name"; then echo "$name running pid $(pid_of "$name")"; else echo "$name stopped"; fi
    done
  fi
  exit 0
fi

# --- up -----------------------------------------------------------------------------
# orthanc_json, gateway_toml, haproxy_cfg:
# shellcheck source=deploy/topology-conf.sh
. "$ROOT/deploy/topology-conf.sh"
mkdir -p "$RUN" "$LOG"
chmod 0711 "$DIR"   # the postgres user must reach DIR/postgres; nothing else is readable
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$DIR"; then
  die "PostgreSQL runs as the postgres user, which cannot reach $DIR (a parent directory is closed): choose a DIR under /var/tmp or /tmp"
fi
if [ ! -f "$DIR/topology.env" ]; then
  cat > "$DIR/topology.env" <<ENV
LB_ADDR=${TOPOLOGY_LB_ADDR:-127.0.0.10}
HTTPS_PORT=${TOPOLOGY_HTTPS_PORT:-443}
DICOM_PORT=${TOPOLOGY_DICOM_PORT:-11112}
GW_A_ADDR=${TOPOLOGY_GW_A_ADDR:-127.0.0.11}
GW_B_ADDR=${TOPOLOGY_GW_B_ADDR:-127.0.0.12}
GW_HTTPS_PORT=${TOPOLOGY_GW_HTTPS_PORT:-8443}
GW_DICOM_PORT=${TOPOLOGY_GW_DICOM_PORT:-11112}
GW_ADMIN_PORT=${TOPOLOGY_GW_ADMIN_PORT:-9090}
ORTHANC_A_HTTP=${TOPOLOGY_ORTHANC_A_HTTP:-8042}
ORTHANC_A_DICOM=${TOPOLOGY_ORTHANC_A_DICOM:-4242}
ORTHANC_B_HTTP=${TOPOLOGY_ORTHANC_B_HTTP:-8043}
ORTHANC_B_DICOM=${TOPOLOGY_ORTHANC_B_DICOM:-4243}
PG_ADDR=${TOPOLOGY_PG_ADDR:-127.0.0.20}
PG_PORT=${TOPOLOGY_PG_PORT:-5432}
S3_ADDR=${TOPOLOGY_S3_ADDR:-127.0.0.21}
S3_PORT=${TOPOLOGY_S3_PORT:-8333}
WEED_MASTER=${TOPOLOGY_WEED_MASTER:-9333}
WEED_VOLUME=${TOPOLOGY_WEED_VOLUME:-8080}
WEED_FILER=${TOPOLOGY_WEED_FILER:-8888}
REDIS_ADDR=${TOPOLOGY_REDIS_ADDR:-127.0.0.22}
REDIS_PORT=${TOPOLOGY_REDIS_PORT:-6379}
CLUSTER=${TOPOLOGY_CLUSTER:-1}
PROXY=${TOPOLOGY_PROXY:-1}
ENV
  printf '%s\n' "${TOPOLOGY_HTTP_RATE_LIMITS:-}" > "$DIR/rate_limits.toml"
  printf '%s\n' "${TOPOLOGY_GATEWAY_EXTRA:-}" > "$DIR/gateway-extra.toml"
fi
# shellcheck source=/dev/null
. "$DIR/topology.env"

if [ -n "${PACSGATE_BIN:-}" ] && [ -n "${PACSGATE_PLUGIN:-}" ]; then
  BIN=$PACSGATE_BIN; PLUGIN=$PACSGATE_PLUGIN
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}"
  say "building pacsgate, pacsgate-storage and the storage plugin (release)"
  (cd "$ROOT" && cargo build --release -p pacsgate -p pacsgate-storage-cli -p pacsgate-orthanc-storage)
  BIN=$CARGO_TARGET_DIR/release/pacsgate; PLUGIN=$CARGO_TARGET_DIR/release/libpacsgate_orthanc_storage.so
fi
WEED=${WEED:-/opt/seaweed-venv/bin/weed}
[ -x "$WEED" ] || WEED=$(command -v weed || true)
for need in "$BIN" "$PLUGIN" "$WEED" "$PG_BIN/initdb" "$PG_INDEX" /usr/sbin/Orthanc \
            "$(command -v redis-server || true)" "$(command -v haproxy || true)"; do
  [ -n "$need" ] && [ -e "$need" ] || die "missing ${need:-redis-server or haproxy}: apt-get install orthanc orthanc-postgresql postgresql-15 redis-server haproxy; SeaweedFS: tests/run.sh"
done

# --- secrets (kept across runs) ----------------------------------------------------------
S=$DIR/secrets
umask 077
mkdir -p "$S"
rand() { head -c 24 /dev/urandom | base64 | tr '+/' '-_'; }
for f in orthanc.password admin.password pg.password pg-super.password s3.secret redis.password; do
  [ -s "$S/$f" ] || rand > "$S/$f"
done
ORTHANC_PW=$(cat "$S/orthanc.password"); ADMIN_PW=$(cat "$S/admin.password")
PG_PW=$(cat "$S/pg.password"); S3_SECRET=$(cat "$S/s3.secret"); REDIS_PW=$(cat "$S/redis.password")
printf 'pacsgate:%s\n' "$ORTHANC_PW" > "$S/orthanc.credentials"
printf 'user = "pacsgate:%s"\n' "$ORTHANC_PW" > "$S/orthanc.curlrc"
[ -s "$S/master-1.key" ] || head -c 32 /dev/urandom | base64 > "$S/master-1.key"
if [ ! -s "$S/tls.crt" ]; then
  # RSA: dcmtk 3.6.7 fails with an ECDSA server certificate under TLS 1.2 (DESIGN.md).
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:$LB_ADDR,IP:$GW_A_ADDR,IP:$GW_B_ADDR" \
    -keyout "$S/tls.key" -out "$S/tls.crt" 2>/dev/null
fi
[ -s "$S/admin.hash" ] || "$BIN" hash-password < "$S/admin.password" | tail -n 1 > "$S/admin.hash"
grep -q '^\$argon2id\$' "$S/admin.hash" || die "pacsgate hash-password gave no argon2id hash"
gcc -shared -fPIC -O2 -o "$DIR/bind_lo.so" "$ROOT/deploy/bind_lo.c" -ldl

# --- PostgreSQL: a throwaway cluster of our own (never the system one) --------------------
start_postgres() {
  local data=$DIR/postgres/data sock=$DIR/postgres/sock
  mkdir -p "$DIR/postgres" "$sock"
  [ "$(id -u)" -ne 0 ] || chown -R postgres: "$DIR/postgres"
  if [ ! -s "$data/PG_VERSION" ]; then
    cp "$S/pg-super.password" "$DIR/postgres/pwfile"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$DIR/postgres/pwfile"
    as_pg "$PG_BIN/initdb" -D "$data" -U postgres --pwfile="$DIR/postgres/pwfile" \
      --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 > "$LOG/postgres-initdb.log" 2>&1 \
      || { cat "$LOG/postgres-initdb.log" >&2; die "initdb failed"; }
    rm -f "$DIR/postgres/pwfile"
  fi
  touch "$LOG/postgres.log"; [ "$(id -u)" -ne 0 ] || chown postgres: "$LOG/postgres.log"
  # pg_ctl -w returns once the server accepts connections.
  as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$LOG/postgres.log" -w -t 60 \
    -o "-k $sock -h $PG_ADDR -p $PG_PORT" start > /dev/null || { tail -n 20 "$LOG/postgres.log" >&2; die "PostgreSQL did not start"; }
  head -n 1 "$data/postmaster.pid" > "$RUN/postgres.pid"
  readlink -f "$PG_BIN/postgres" > "$RUN/postgres.exe"
  export PGPASSWORD; PGPASSWORD=$(cat "$S/pg-super.password")
  local psql=("$PG_BIN/psql" -q -v ON_ERROR_STOP=1 -h "$PG_ADDR" -p "$PG_PORT" -U postgres)
  if [ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'orthanc'")" != 1 ]; then
    "${psql[@]}" -c "CREATE ROLE orthanc LOGIN PASSWORD '$PG_PW'"
    "${psql[@]}" -c "CREATE DATABASE orthanc OWNER orthanc ENCODING 'UTF8'"
  fi
  unset PGPASSWORD
}

# --- SeaweedFS (S3) ------------------------------------------------------------------
s3_curl() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 --aws-sigv4 aws:amz:us-east-1:s3 \
  --user "orthanc:$S3_SECRET" "$@"; }
bucket_ready() { case "$(s3_curl -X PUT "http://$S3_ADDR:$S3_PORT/orthanc")" in 200|409) return 0 ;; esac; return 1; }
start_s3() {
  mkdir -p "$DIR/s3"
  printf '{"identities":[{"name":"orthanc","credentials":[{"accessKey":"orthanc","secretKey":"%s"}],"actions":["Admin","Read","Write","List"]}]}\n' \
    "$S3_SECRET" > "$S/s3.json"
  spawn s3 "$WEED" server -ip="$S3_ADDR" -ip.bind="$S3_ADDR" -dir="$DIR/s3" -master.telemetry=false \
    -master.port="$WEED_MASTER" -master.volumeSizeLimitMB=64 -volume.port="$WEED_VOLUME" -volume.max=100 \
    -filer -filer.port="$WEED_FILER" -s3 -s3.port="$S3_PORT" -s3.config="$S/s3.json" \
    -s3.port.iceberg=0 -s3.port.lance=0
  # Iceberg (8181) and Lance (9101) listeners are off: fixed ports two topologies on one
  # machine would share. The port opens before the filer is ready (scaleout.md): ready
  # once the bucket exists.
  wait_for "SeaweedFS S3 (bucket orthanc)" s3 1200 bucket_ready
}

start_redis() {
  # No persistence: limits are short-lived; a restarted Redis starts empty.
  printf 'bind %s\nport %s\nrequirepass %s\nsave ""\nappendonly no\nprotected-mode yes\ndir %s\n' \
    "$REDIS_ADDR" "$REDIS_PORT" "$REDIS_PW" "$DIR" > "$S/redis.conf"
  spawn redis "$(command -v redis-server)" "$S/redis.conf"
  wait_for "Redis" redis 300 tcp_open "$REDIS_ADDR" "$REDIS_PORT"
}

# --- Orthanc nodes: same index, same bucket, same keys --------------------------------
orthanc_ready() { curl -sf -K "$S/orthanc.curlrc" -o "$DIR/orthanc-$1/system.json" "http://127.0.0.1:$2/system"; }
start_orthanc() {
  local node=$1 http=$2 dicom=$3
  orthanc_json "$node" "$http" "$dicom" > "$DIR/orthanc-$node.json"
  LD_PRELOAD="$DIR/bind_lo.so" spawn "orthanc-$node" /usr/sbin/Orthanc "$DIR/orthanc-$node.json"
  wait_for "Orthanc $node" "orthanc-$node" 1200 orthanc_ready "$node" "$http"
  grep -Eq '"StorageAreaPlugin" *: *"/' "$DIR/orthanc-$node/system.json" \
    && grep -Eq '"DatabaseBackendPlugin" *: *"/' "$DIR/orthanc-$node/system.json" \
    || die "Orthanc $node started without the PostgreSQL index or the storage plugin"
}

# --- pacsgate replicas ----------------------------------------------------------------
gateway_ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1:$GW_ADMIN_PORT/readyz")" = 200 ]; }
start_gateway() {
  local node=$1 addr=$2 http=$3 dicom=$4
  mkdir -p "$DIR/gateway-$node"
  gateway_toml "$node" "$addr" "$http" "$dicom" > "$DIR/gateway-$node/pacsgate.toml"
  "$BIN" check --config "$DIR/gateway-$node/pacsgate.toml" > "$LOG/gateway-$node.check" 2>&1 \
    || { cat "$LOG/gateway-$node.check" >&2; die "pacsgate check refused gateway-$node's config"; }
  spawn "gateway-$node" "$BIN" run --config "$DIR/gateway-$node/pacsgate.toml"
  wait_for "pacsgate $node (/readyz)" "gateway-$node" 1200 gateway_ready "$addr"
}

# --- HAProxy: TCP mode, health from each gateway's /readyz ----------------------------
start_haproxy() {
  haproxy_cfg > "$DIR/haproxy.cfg"
  haproxy -c -f "$DIR/haproxy.cfg" > "$LOG/haproxy.check" 2>&1 || { cat "$LOG/haproxy.check" >&2; die "haproxy refused its config"; }
  spawn haproxy "$(command -v haproxy)" -db -f "$DIR/haproxy.cfg"
  wait_for "HAProxy" haproxy 300 tcp_open "$LB_ADDR" "$HTTPS_PORT"
  wait_for "HAProxy's DICOM port" haproxy 300 tcp_open "$LB_ADDR" "$DICOM_PORT"
}

# start NAME FUNCTION ARGS...: unless NAME is running already (`up` after a crash or a
# test's SIGKILL restarts only what is gone).
start() {
  local name=$1 fn=$2; shift 2
  if alive "$name"; then echo "$name already running (pid $(pid_of "$name"))"; return 0; fi
  say "starting $name"
  "$fn" "$@"
}
start postgres start_postgres
start s3 start_s3
start redis start_redis
start orthanc-a start_orthanc a "$ORTHANC_A_HTTP" "$ORTHANC_A_DICOM"
start orthanc-b start_orthanc b "$ORTHANC_B_HTTP" "$ORTHANC_B_DICOM"
start gateway-a start_gateway a "$GW_A_ADDR" "$ORTHANC_A_HTTP" "$ORTHANC_A_DICOM"
start gateway-b start_gateway b "$GW_B_ADDR" "$ORTHANC_B_HTTP" "$ORTHANC_B_DICOM"
start haproxy start_haproxy

SUFFIX=""; [ "$HTTPS_PORT" = 443 ] || SUFFIX=":$HTTPS_PORT"
cat <<MSG
==> topology up in $DIR (stop: $0 down $DIR)
    HTTPS      https://$LB_ADDR$SUFFIX/        (HAProxy -> pacsgate A $GW_A_ADDR:$GW_HTTPS_PORT, B $GW_B_ADDR:$GW_HTTPS_PORT)
    DICOM TLS  $LB_ADDR:$DICOM_PORT, called AE ORTHANC
    account    admin / $ADMIN_PW   (also in $S/admin.password)
    CA         $S/tls.crt
    Orthanc A  127.0.0.1:$ORTHANC_A_HTTP / $ORTHANC_A_DICOM, B 127.0.0.1:$ORTHANC_B_HTTP / $ORTHANC_B_DICOM (account in $S/orthanc.credentials: the gateways only)
    PostgreSQL $PG_ADDR:$PG_PORT (database orthanc), S3 http://$S3_ADDR:$S3_PORT/orthanc, Redis $REDIS_ADDR:$REDIS_PORT
    cluster=$CLUSTER proxy=$PROXY; logs in $LOG
    try: curl --cacert $S/tls.crt -u 'admin:$ADMIN_PW' https://localhost$SUFFIX/system --resolve localhost:$HTTPS_PORT:$LB_ADDR
         /usr/bin/echoscu -v -aec ORTHANC +tla +cf $S/tls.crt $LB_ADDR $DICOM_PORT
MSG

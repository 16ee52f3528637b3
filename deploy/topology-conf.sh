# The configuration files of deploy/topology.sh, written from its variables (sourced by it,
# not a command of its own): each Orthanc node, each pacsgate replica, HAProxy.

# Orthanc nodes: the same index, the same bucket, the same keys (README "Two nodes").
orthanc_json() {
  local node=$1 http=$2 dicom=$3
  mkdir -p "$DIR/orthanc-$node/db"
  cat <<JSON
{
  "Name": "pacsgate-topology-$node",
  "StorageDirectory": "$DIR/orthanc-$node/db",
  "IndexDirectory": "$DIR/orthanc-$node/db",
  "HttpPort": $http,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": true,
  "RegisteredUsers": { "pacsgate": "$ORTHANC_PW" },
  "DicomAet": "ORTHANC",
  "DicomPort": $dicom,
  "DicomCheckCalledAet": true,
  "DicomAlwaysAllowEcho": true,
  "DicomAlwaysAllowStore": true,
  "DicomCheckModalityHost": false,
  "WebDavEnabled": false,
  "ExecuteLuaEnabled": false,
  "RestApiWriteToFileSystemEnabled": false,
  "MaximumStorageCacheSize": 0,
  "OverwriteInstances": false,
  "SaveJobs": false,
  "Plugins": ["$PG_INDEX", "$PLUGIN"],
  "PostgreSQL": {
    "EnableIndex": true,
    "EnableStorage": false,
    "Host": "$PG_ADDR",
    "Port": $PG_PORT,
    "Database": "orthanc",
    "Username": "orthanc",
    "Password": "$PG_PW",
    "Lock": false,
    "IndexConnectionsCount": 5,
    "MaximumConnectionRetries": 10,
    "ConnectionRetryInterval": 1
  },
  "PacsgateStorage": {
    "StorageEncryption": { "Enable": true, "MasterKey": [1, "$S/master-1.key"], "PreviousMasterKeys": [] },
    "Location": { "Type": "object", "Url": "s3://orthanc/objects",
                  "Options": { "endpoint": "http://$S3_ADDR:$S3_PORT", "allow_http": "true",
                               "region": "us-east-1", "access_key_id": "orthanc",
                               "secret_access_key": "$S3_SECRET",
                               "virtual_hosted_style_request": "false" } }
  }
}
JSON
}

# pacsgate replicas.
gateway_toml() {
  local node=$1 addr=$2 http=$3 dicom=$4
  local proxy_line=""
  [ "$PROXY" = 1 ] && proxy_line="proxy_protocol = [\"$LB_ADDR/32\"]"
  cat <<TOML
# pacsgate replica $node of deploy/topology.sh (generated; edits are overwritten by up)
[tls]
cert = "$S/tls.crt"
key = "$S/tls.key"
hostnames = ["localhost"]

[http]
listen = "$addr:$GW_HTTPS_PORT"
upstream = "http://127.0.0.1:$http"
upstream_credentials_file = "$S/orthanc.credentials"
authentication = "required"
$proxy_line

[http.rate_limits]
$(cat "$DIR/rate_limits.toml" 2>/dev/null)

[users.admin]
password_hash = "$(cat "$S/admin.hash")"

[[http.rules]]
users = ["admin"]
methods = ["*"]
paths = ["/**"]

[dicom]
listen = "$addr:$GW_DICOM_PORT"
upstream = "127.0.0.1:$dicom"
$proxy_line

[audit]
path = "$DIR/gateway-$node/audit.jsonl"

[admin]
listen = "$addr:$GW_ADMIN_PORT"
TOML
  cat "$DIR/gateway-extra.toml" 2>/dev/null || true
  if [ "$CLUSTER" = 1 ]; then
    # The password from a 0600 file, never in the URL (it would show in `pacsgate check`).
    printf '\n[cluster]\nredis = "redis://%s:%s"\nredis_password_file = "%s"\n' "$REDIS_ADDR" "$REDIS_PORT" "$S/redis.password"
  fi
}

# HAProxy: TCP mode, health from each gateway's /readyz.
haproxy_cfg() {
  local send=""
  [ "$PROXY" = 1 ] && send=" send-proxy-v2"
  cat <<CFG
# deploy/topology.sh (generated)
global
  maxconn 4096
defaults
  mode tcp
  # Connections to the gateways leave from the balancer's own address: the one address
  # the gateways accept PROXY headers from.
  source $LB_ADDR
  timeout connect 2s
  timeout client 10m
  timeout server 10m
  timeout check 2s
  # A refused connect (replica down, health check not yet failed) goes to the other one.
  retries 2
  option redispatch 1
frontend https
  bind $LB_ADDR:$HTTPS_PORT
  default_backend gateways_https
frontend dicom
  bind $LB_ADDR:$DICOM_PORT
  default_backend gateways_dicom
backend gateways_https
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  server a $GW_A_ADDR:$GW_HTTPS_PORT check addr $GW_A_ADDR port $GW_ADMIN_PORT inter 500ms fall 2 rise 2$send
  server b $GW_B_ADDR:$GW_HTTPS_PORT check addr $GW_B_ADDR port $GW_ADMIN_PORT inter 500ms fall 2 rise 2$send
backend gateways_dicom
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  server a $GW_A_ADDR:$GW_DICOM_PORT check addr $GW_A_ADDR port $GW_ADMIN_PORT inter 500ms fall 2 rise 2$send
  server b $GW_B_ADDR:$GW_DICOM_PORT check addr $GW_B_ADDR port $GW_ADMIN_PORT inter 500ms fall 2 rise 2$send
CFG
}

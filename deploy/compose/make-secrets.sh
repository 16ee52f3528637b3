#!/usr/bin/env bash
# Generate the secret files deploy/compose.yaml mounts (into deploy/compose/secrets/ or
# the directory given): a self-signed TLS pair (replace with your own), Orthanc's REST
# account for pacsgate, the storage master key, the PostgreSQL and S3 passwords. Existing
# files are kept. Needs openssl. Run as root to give each file to the uid that reads it
# (10001 pacsgate, 999 Orthanc); files are 0600 (0644 is never needed).
set -euo pipefail
OUT=${1:-$(cd "$(dirname "$0")" && pwd)/secrets}
mkdir -p "$OUT" && chmod 0700 "$OUT"
umask 077
new() { [ ! -e "$OUT/$1" ]; }
rand() { openssl rand -hex 24; }

if new tls.crt; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$OUT/tls.key" -out "$OUT/tls.crt" 2>/dev/null
fi
if new orthanc.credentials; then
  pw=$(rand)
  printf 'pacsgate:%s\n' "$pw" > "$OUT/orthanc.credentials"
  printf '{ "RegisteredUsers": { "pacsgate": "%s" } }\n' "$pw" > "$OUT/orthanc-users.json"
fi
# The storage master key: base64 of 32 random bytes (README "Encrypting storage").
new master-1.key && openssl rand -base64 32 > "$OUT/master-1.key"
if new postgres_password; then
  rand > "$OUT/postgres_password"
  printf '{ "PostgreSQL": { "EnableIndex": true, "EnableStorage": false, "Host": "postgres", "Port": 5432, "Database": "orthanc", "Username": "orthanc", "Password": "%s" } }\n' \
    "$(cat "$OUT/postgres_password")" > "$OUT/orthanc-postgresql.json"
fi
if new s3.json; then
  secret=$(rand)
  printf '{"identities":[{"name":"orthanc","credentials":[{"accessKey":"orthanc","secretKey":"%s"}],"actions":["Admin","Read","Write","List"]}]}\n' \
    "$secret" > "$OUT/s3.json"
  cat > "$OUT/orthanc-storage.json" <<JSON
{
  "PacsgateStorage": {
    "StorageEncryption": {
      "Enable": true,
      "MasterKey": [1, "/run/secrets/master-1.key"],
      "PreviousMasterKeys": [],
      "MaxConcurrentInputSize": 1024
    },
    "Location": { "Type": "object", "Url": "s3://orthanc/objects",
                  "Options": { "endpoint": "http://s3:8333", "allow_http": "true",
                               "region": "us-east-1", "access_key_id": "orthanc",
                               "secret_access_key": "$secret",
                               "virtual_hosted_style_request": "false" } }
  }
}
JSON
fi
if [ "$(id -u)" -eq 0 ]; then
  chown 10001:10001 "$OUT/tls.crt" "$OUT/tls.key" "$OUT/orthanc.credentials"
  chown 999:999 "$OUT/postgres_password" "$OUT/orthanc-users.json" "$OUT/orthanc-storage.json" "$OUT/orthanc-postgresql.json" "$OUT/master-1.key"
fi
echo "secrets in $OUT"

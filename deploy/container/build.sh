#!/usr/bin/env bash
# Build the two images with podman from prebuilt release binaries:
#   localhost/pacsgate:dev          FROM scratch: pacsgate + the libraries ldd names
#   localhost/pacsgate-orthanc:dev  Debian 12 rootfs (mmdebstrap: orthanc, orthanc-postgresql)
#                                   + the encrypting storage plugin
# Steps: cargo build --release (skip with PACSGATE_SKIP_CARGO=1), fill the build contexts
# under $CARGO_TARGET_DIR/container/, podman build (layer cache reused). The Debian rootfs
# tarball is made once and reused until the package list below changes.
# Environment: CARGO_TARGET_DIR (default /var/tmp/pacsgate-target), PACSGATE_IMAGE,
# ORTHANC_IMAGE, DEBIAN_MIRROR (default http://deb.debian.org/debian).
# Needs: podman, mmdebstrap (apt-get install podman mmdebstrap), root for mmdebstrap.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pacsgate-target}"
PACSGATE_IMAGE=${PACSGATE_IMAGE:-localhost/pacsgate:dev}
ORTHANC_IMAGE=${ORTHANC_IMAGE:-localhost/pacsgate-orthanc:dev}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CTX="$CARGO_TARGET_DIR/container"
# The non-root accounts (deploy/k8s/ names the same numbers in runAsUser).
PACSGATE_UID=10001
ORTHANC_UID=999
ORTHANC_PACKAGES=orthanc,orthanc-postgresql,ca-certificates

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (apt-get install $tool)" >&2; exit 69; }
done

if [ "${PACSGATE_SKIP_CARGO:-0}" != 1 ]; then
  (cd "$ROOT" && nice -n 10 cargo build --release --locked -p pacsgate -p pacsgate-orthanc-storage)
fi
BIN="$CARGO_TARGET_DIR/release/pacsgate"
PLUGIN="$CARGO_TARGET_DIR/release/libpacsgate_orthanc_storage.so"
for f in "$BIN" "$PLUGIN"; do
  [ -f "$f" ] || { echo "build.sh: $f missing: run cargo build --release first" >&2; exit 66; }
done

# --- pacsgate: a rootfs of exactly what the binary needs -------------------------------
P="$CTX/pacsgate"
rm -rf "$P" && mkdir -p "$P/rootfs/usr/bin" "$P/rootfs/etc/pacsgate" "$P/rootfs/etc/ssl/certs" "$P/state"
install -m 0755 "$BIN" "$P/rootfs/usr/bin/pacsgate"
# Every shared object the loader resolves (ldd), at the same path, plus the loader itself.
# The binary was linked against this machine's glibc, so these are the matching copies.
ldd "$BIN" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}' | sort -u | while read -r lib; do
  mkdir -p "$P/rootfs$(dirname "$lib")"
  cp -L "$lib" "$P/rootfs$lib"
done
# glibc resolves users and hosts through nsswitch.conf; `files` is built into libc 2.34+.
printf 'root:x:0:0:root:/nonexistent:/nonexistent\npacsgate:x:%s:%s:pacsgate:/var/lib/pacsgate:/nonexistent\n' \
  "$PACSGATE_UID" "$PACSGATE_UID" > "$P/rootfs/etc/passwd"
printf 'root:x:0:\npacsgate:x:%s:\n' "$PACSGATE_UID" > "$P/rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$P/rootfs/etc/nsswitch.conf"
cp -L /etc/ssl/certs/ca-certificates.crt "$P/rootfs/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$P/rootfs/tmp" && chmod 1777 "$P/rootfs/tmp"
cp "$ROOT/deploy/container/pacsgate.Containerfile" "$P/Containerfile"
nice -n 10 podman build --format docker --layers -t "$PACSGATE_IMAGE" -f "$P/Containerfile" "$P"

# --- Orthanc: Debian's packages in an mmdebstrap rootfs --------------------------------
O="$CTX/orthanc"
mkdir -p "$O"
STAMP="$ORTHANC_PACKAGES uid=$ORTHANC_UID mirror=$MIRROR v2"
if [ ! -f "$O/orthanc-rootfs.tar" ] || [ "$(cat "$O/rootfs.stamp" 2>/dev/null)" != "$STAMP" ]; then
  # The essential hook adds the orthanc account before the package's postinst would
  # (it skips adduser when `getent passwd orthanc` finds one), pinning uid/gid 999.
  # Debian's sample configuration goes: /etc/orthanc holds only what a deployment mounts
  # (one file each, so compose and Kubernetes can mount config and secrets side by side).
  nice -n 10 mmdebstrap --variant=minbase --include="$ORTHANC_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --essential-hook="echo 'orthanc:x:$ORTHANC_UID:$ORTHANC_UID:Orthanc:/var/lib/orthanc:/usr/sbin/nologin' >> \"\$1/etc/passwd\"; echo 'orthanc:x:$ORTHANC_UID:' >> \"\$1/etc/group\"" \
    --customize-hook='chroot "$1" install -d -o orthanc -g orthanc -m 0750 /var/lib/orthanc/db /var/lib/orthanc/encrypted' \
    --customize-hook='rm -f "$1"/etc/orthanc/*.json' \
    bookworm "$O/orthanc-rootfs.tmp.tar" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
    "deb ${MIRROR%/debian}/debian-security bookworm-security main"
  mv "$O/orthanc-rootfs.tmp.tar" "$O/orthanc-rootfs.tar"
  echo "$STAMP" > "$O/rootfs.stamp"
fi
cp "$PLUGIN" "$O/libpacsgate_orthanc_storage.so"
cp "$ROOT/deploy/container/orthanc.Containerfile" "$O/Containerfile"
nice -n 10 podman build --format docker --layers -t "$ORTHANC_IMAGE" -f "$O/Containerfile" "$O"

# Earlier builds of these two images, now untagged (only images carrying our labels).
for title in pacsgate pacsgate-orthanc; do
  podman image prune -f --filter "label=org.opencontainers.image.title=$title" >/dev/null
done
echo "built $PACSGATE_IMAGE and $ORTHANC_IMAGE"

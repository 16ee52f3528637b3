#!/usr/bin/env bash
# Build the Debian package from this repository: deploy/debian/build-deb.sh [options]
#   --bin PATH       pacsgate binary (default: cargo build --release, then target/release)
#   --tool PATH      pacsgate-storage, the storage tool (default: beside --bin)
#   --plugin PATH    libpacsgate_orthanc_storage.so (default: beside --bin)
#   --revision N     Debian revision (default 1): version is <Cargo version>-N
#   --out-dir DIR    where the .deb goes (default: target/debian under CARGO_TARGET_DIR)
# Prints the path of the .deb on stdout. Needs dpkg-dev (dpkg-deb, dpkg-shlibdeps) and gcc.
#
# Why a script over dpkg-deb rather than cargo-deb: the maintainer scripts (user before
# ownership, directories, purge) are hand-written either way, the package also carries a
# C shim, generated man pages and completions, and this needs nothing beyond dpkg-dev,
# already on every Debian build machine (cargo-deb is another compile of ~200 crates).
#
# Layout (README "Install from the .deb"):
#   /usr/bin/pacsgate                            the gateway and its CLI
#   /usr/bin/pacsgate-storage                    storage tools (`pacsgate storage` runs it)
#   /usr/lib/pacsgate/libpacsgate_orthanc_storage.so, bind_lo.so
#   /etc/pacsgate/config.toml                    conffile, root:pacsgate 0640
#   /lib/systemd/system/pacsgate.service         hardened, Type=notify
#   /etc/logrotate.d/pacsgate                    conffile
#   /var/lib/pacsgate (0700), /var/log/pacsgate (0750), owned by pacsgate (postinst)
#   man pages, bash/zsh/fish completions, docs and examples in /usr/share
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="" TOOL="" PLUGIN="" REVISION=1 OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --tool) TOOL=$2; shift 2 ;;
    --plugin) PLUGIN=$2; shift 2 ;;
    --revision) REVISION=$2; shift 2 ;;
    --out-dir) OUT=$2; shift 2 ;;
    *) echo "build-deb.sh: unknown option $1" >&2; exit 64 ;;
  esac
done
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --release --quiet -p pacsgate -p pacsgate-storage-cli -p pacsgate-orthanc-storage)
  BIN="$CARGO_TARGET_DIR/release/pacsgate"
fi
TOOL=${TOOL:-$(dirname "$BIN")/pacsgate-storage}
PLUGIN=${PLUGIN:-$(dirname "$BIN")/libpacsgate_orthanc_storage.so}
OUT=${OUT:-$CARGO_TARGET_DIR/debian}
for f in "$BIN" "$TOOL" "$PLUGIN"; do [ -f "$f" ] || { echo "build-deb.sh: $f is missing" >&2; exit 1; }; done

CRATE_VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)
VERSION="$CRATE_VERSION-$REVISION"
ARCH=$(dpkg --print-architecture)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PKG="$WORK/pkg"
DEBIAN="$PKG/DEBIAN"
DOC="$PKG/usr/share/doc/pacsgate"

install -d -m 0755 "$DEBIAN" "$PKG/usr/bin" "$PKG/usr/lib/pacsgate" "$PKG/lib/systemd/system" \
  "$PKG/etc/logrotate.d" "$DOC/examples" "$PKG/usr/share/man/man1" \
  "$PKG/usr/share/bash-completion/completions" "$PKG/usr/share/zsh/vendor-completions" \
  "$PKG/usr/share/fish/vendor_completions.d"
# No group or world access before postinst gives the group to pacsgate.
install -d -m 0750 "$PKG/etc/pacsgate"
install -m 0755 "$BIN" "$PKG/usr/bin/pacsgate"
install -m 0755 "$TOOL" "$PKG/usr/bin/pacsgate-storage"
install -m 0644 "$PLUGIN" "$PKG/usr/lib/pacsgate/libpacsgate_orthanc_storage.so"
gcc -shared -fPIC -O2 -Wall -o "$PKG/usr/lib/pacsgate/bind_lo.so" "$ROOT/deploy/bind_lo.c" -ldl
strip --strip-unneeded "$PKG/usr/lib/pacsgate/bind_lo.so"
chmod 0644 "$PKG/usr/lib/pacsgate/bind_lo.so"
install -m 0644 "$ROOT/deploy/pacsgate.service" "$PKG/lib/systemd/system/pacsgate.service"
install -m 0644 "$ROOT/deploy/pacsgate.logrotate" "$PKG/etc/logrotate.d/pacsgate"

# The shipped configuration: config.toml with the package's paths. Each edit is checked,
# so a reworded config.toml fails the build instead of shipping relative paths.
edit() { # edit SED-EXPR EXPECTED-LINE
  sed -i -e "$1" "$WORK/config.toml"
  grep -qxF "$2" "$WORK/config.toml" || { echo "build-deb.sh: config.toml: no line '$2' after $1" >&2; exit 1; }
}
cp "$ROOT/config.toml" "$WORK/config.toml"
for pair in cert:server.crt key:server.key rsa_cert:server-rsa.crt rsa_key:server-rsa.key; do
  k=${pair%%:*} f=${pair#*:}
  edit "s|^$k = \"certs/$f\"|$k = \"/var/lib/pacsgate/certs/$f\"|" "$k = \"/var/lib/pacsgate/certs/$f\""
done
edit 's|^# path = "/var/log/pacsgate/audit.jsonl"|path = "/var/log/pacsgate/audit.jsonl"|' 'path = "/var/log/pacsgate/audit.jsonl"'
install -m 0640 "$WORK/config.toml" "$PKG/etc/pacsgate/config.toml"

# Generated from the binary's own command-line definition.
"$BIN" man --out-dir "$PKG/usr/share/man/man1"
# After the gateway's: the tool's own pacsgate-storage.1 replaces the page of the
# pass-through `pacsgate storage` subcommand.
"$TOOL" man "$PKG/usr/share/man/man1"
gzip -9n "$PKG"/usr/share/man/man1/*.1
"$BIN" completions bash > "$PKG/usr/share/bash-completion/completions/pacsgate"
"$BIN" completions zsh > "$PKG/usr/share/zsh/vendor-completions/_pacsgate"
"$BIN" completions fish > "$PKG/usr/share/fish/vendor_completions.d/pacsgate.fish"
"$TOOL" completions bash > "$PKG/usr/share/bash-completion/completions/pacsgate-storage"
"$TOOL" completions zsh > "$PKG/usr/share/zsh/vendor-completions/_pacsgate-storage"
"$TOOL" completions fish > "$PKG/usr/share/fish/vendor_completions.d/pacsgate-storage.fish"

install -m 0644 "$ROOT/README.md" "$ROOT/SECURITY.md" "$DOC/"
gzip -9n -c "$ROOT/CHANGELOG.md" > "$DOC/changelog.gz"
install -m 0644 "$ROOT/config.toml" "$DOC/examples/config.toml"
install -m 0644 "$ROOT/deploy/orthanc-loopback.conf" "$DOC/examples/orthanc-loopback.conf"
cat > "$DOC/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pacsgate

Files: *
Copyright: the pacsgate authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0 (also LICENSE in the source).
COPYRIGHT
find "$PKG/usr/share" -type f -exec chmod 0644 {} +

for script in postinst prerm postrm; do
  install -m 0755 "$ROOT/deploy/debian/$script" "$DEBIAN/$script"
done
printf '/etc/pacsgate/config.toml\n/etc/logrotate.d/pacsgate\n' > "$DEBIAN/conffiles"

# Shared-library dependencies as dpkg-shlibdeps computes them (it wants a debian/control).
mkdir -p "$WORK/src/debian"
printf 'Source: pacsgate\n\nPackage: pacsgate\nArchitecture: any\n' > "$WORK/src/debian/control"
SHLIBS=$(cd "$WORK/src" && dpkg-shlibdeps -O -e"$PKG/usr/bin/pacsgate" -e"$PKG/usr/bin/pacsgate-storage" \
  -e"$PKG/usr/lib/pacsgate/libpacsgate_orthanc_storage.so" -e"$PKG/usr/lib/pacsgate/bind_lo.so" 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')
SIZE=$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
cat > "$DEBIAN/control" <<CONTROL
Package: pacsgate
Version: $VERSION
Architecture: $ARCH
Maintainer: pacsgate maintainers <security@pacsgate.invalid>
Installed-Size: $SIZE
Depends: ${SHLIBS:+$SHLIBS, }passwd, init-system-helpers (>= 1.52)
Recommends: orthanc (>= 1.9.0), logrotate
Suggests: dcmtk
Section: net
Priority: optional
Description: security edge for a local PACS (HTTPS and DICOM TLS)
 pacsgate sits in front of a PACS such as Orthanc that listens on loopback: it terminates
 HTTPS and DICOM TLS, authenticates users, applies per-user rules, rate limits and a
 DICOM modality policy, audits every request and association, and forwards to the PACS.
 Also ships an Orthanc storage plugin that encrypts every stored file.
CONTROL

mkdir -p "$OUT"
DEB="$OUT/pacsgate_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$PKG" "$DEB" >/dev/null
echo "$DEB"

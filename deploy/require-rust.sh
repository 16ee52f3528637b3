# Sourced by deploy/quickstart.sh and tests/run.sh: require_rust MIN finds cargo (also in
# ~/.cargo/bin when rustup installed it but this shell predates it on PATH) and checks its
# version against Cargo.toml's rust-version. Debian 12's own rustc (1.63) is too old and
# Debian has no rustup package before 13, so the fix is rustup, from rustup.rs.
require_rust() {
  local min=$1 have
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) PATH="$HOME/.cargo/bin:$PATH"; export PATH ;; esac
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    printf '%s\n' "cargo is missing: pacsgate needs Rust >= $min. Install it with rustup (https://rustup.rs):" \
      "    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile default" \
      "then run this command again (Debian 12's own rustc is 1.63, too old)." >&2
    exit 1
  fi
  have=$(cargo --version | awk '{print $2}')
  if [ "$(printf '%s\n%s\n' "$min" "$have" | sort -V | head -n 1)" != "$min" ]; then
    printf '%s\n' "cargo $have ($(command -v cargo)) is older than Rust $min (rust-version in Cargo.toml):" \
      "    rustup update stable        # or install rustup from https://rustup.rs" >&2
    exit 1
  fi
}

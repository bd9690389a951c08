# Sourced by the scripts that build: find the Rust toolchain also when run through sudo, where
# root's PATH (sudo's secure_path) and HOME do not lead to the invoking user's rustup install.
if ! command -v cargo >/dev/null 2>&1 && [[ -n ${SUDO_USER:-} ]]; then
  sudo_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  if [[ -x $sudo_home/.cargo/bin/cargo ]]; then
    export PATH="$sudo_home/.cargo/bin:$PATH"
    export RUSTUP_HOME="${RUSTUP_HOME:-$sudo_home/.rustup}"
    export CARGO_HOME="${CARGO_HOME:-$sudo_home/.cargo}"
  fi
fi

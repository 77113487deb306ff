#!/usr/bin/env bash
# Installs what inloop's build and tests need, skipping whatever is already present.
# Idempotent and fast on a machine that has everything: each step checks before it installs.
#
#   scripts/setup.sh            everything (Rust targets and tools, Debian packages, npm, venv)
#
# Installs go to the usual caches: ~/.cargo/bin for cargo tools, node_modules/ and .venv/ in the
# repository for npm and Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34msetup:\033[0m %s\n' "$*" >&2; }

# --- Rust: the wasm target and wasm-bindgen-cli at the exact version of the pinned crate ---------
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

wasm_bindgen_version=$(sed -n 's/^wasm-bindgen = { *version = "=\([0-9.]*\)".*/\1/p; s/^wasm-bindgen = "=\([0-9.]*\)"/\1/p' Cargo.toml | head -n1)
if [ -z "$wasm_bindgen_version" ]; then
  echo "setup: Cargo.toml must pin wasm-bindgen with '=' in [workspace.dependencies]" >&2
  exit 1
fi
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wasm_bindgen_version" ]; then
  log "installing wasm-bindgen-cli $wasm_bindgen_version (a few minutes, once)"
  # Not --locked: its lockfile does not resolve against this registry mirror.
  cargo install wasm-bindgen-cli --version "$wasm_bindgen_version" --force
fi

# --- Debian: Chromium and its driver for browser tests, binaryen for wasm-opt ---------------------
missing_debs=()
command -v chromium >/dev/null || missing_debs+=(chromium)
command -v chromedriver >/dev/null || missing_debs+=(chromium-driver)
command -v wasm-opt >/dev/null || missing_debs+=(binaryen)
command -v git >/dev/null || missing_debs+=(git)  # inloop run --git, and its tests
if [ ${#missing_debs[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing_debs[*]}"
  sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing_debs[@]}"
fi

# --- npm: web and test packages (pyodide, playwright-core, esbuild, CodeMirror, yjs) --------------
# A stamp beside node_modules remembers which package-lock.json was installed.
lock_hash=$(sha256sum package.json package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
if [ "$(cat node_modules/.inloop-stamp 2>/dev/null)" != "$lock_hash" ]; then
  log "installing npm packages"
  # No test tool may download a browser: Debian's chromium is the one we drive.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.inloop-stamp
fi

# --- Python: a venv with ipykernel and the test-only tools (nbformat, pycrdt, jupyter_ydoc) ------
req_hash=$(sha256sum tests/requirements.txt | cut -c1-16)
if [ "$(cat .venv/.inloop-stamp 2>/dev/null)" != "$req_hash" ]; then
  log "creating the Python venv in .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt
  # Register the venv's python3 kernelspec inside the venv, where Jupyter looks first.
  .venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
  echo "$req_hash" > .venv/.inloop-stamp
fi

log "toolchain ready"

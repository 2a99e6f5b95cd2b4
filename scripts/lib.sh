# Shared set-up for scripts/run and scripts/test: installs what Snapgres needs, skipping what is
# already there at the right version. Tools go to a cache outside the checkout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${SNAPGRES_TOOLS_DIR:-$HOME/.cache/snapgres-tools}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/snapgres-target}"
PG_BIN_DIR="${SNAPGRES_PG_BIN_DIR:-/usr/lib/postgresql/15/bin}"
mkdir -p "$TOOLS" "$CARGO_TARGET_DIR"

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
ensure_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$APT_UPDATED" = 0 ]; then
      log "apt-get update"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
      APT_UPDATED=1
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_postgres() {
  if [ ! -x "$PG_BIN_DIR/initdb" ] || [ ! -x "$PG_BIN_DIR/pg_restore" ]; then
    ensure_apt postgresql-15 postgresql-client-15
  fi
  # The Debian package starts a default cluster; Snapgres does not use it, and its port would
  # only be in the way. Leave it alone if the operator uses it.
  command -v runuser >/dev/null || ensure_apt util-linux
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    log "creating the postgres OS user"
    useradd --system --home /var/lib/postgresql --shell /bin/bash postgres
  fi
}

AZURITE_VERSION=3.37.0
ensure_azurite() {
  local dir="$TOOLS/azurite"
  local have
  have="$(node -p "require('$dir/node_modules/azurite/package.json').version" 2>/dev/null || true)"
  if [ "$have" != "$AZURITE_VERSION" ] || [ ! -x "$dir/node_modules/.bin/azurite-blob" ]; then
    command -v npm >/dev/null || ensure_apt nodejs npm
    log "installing Azurite $AZURITE_VERSION"
    mkdir -p "$dir"
    npm install --silent --no-audit --no-fund --prefix "$dir" "azurite@$AZURITE_VERSION" >/dev/null
  fi
  export SNAPGRES_AZURITE_BIN="$dir/node_modules/.bin/azurite-blob"
}

KUBERNETES_VALIDATE_VERSION=1.37.0
ensure_kubernetes_validate() {
  local venv="$TOOLS/kv"
  if ! "$venv/bin/pip" show kubernetes-validate 2>/dev/null | grep -qx "Version: $KUBERNETES_VALIDATE_VERSION"; then
    command -v python3 >/dev/null || ensure_apt python3 python3-venv
    log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
    python3 -m venv "$venv" || { ensure_apt python3-venv; python3 -m venv "$venv"; }
    "$venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  fi
  export SNAPGRES_KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"
}

TRUNK_VERSION=0.21.14
WASM_BINDGEN_VERSION=0.2.130
BINARYEN_VERSION=132.0.0
# Everything the console build and its browser tests need; each tool once, in the cache.
ensure_console_tools() {
  ensure_apt chromium chromium-driver libssl-dev pkg-config
  rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  if [ "$("$TOOLS/trunk/bin/trunk" --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]; then
    log "installing trunk $TRUNK_VERSION (takes a while, once)"
    cargo install --locked "trunk@$TRUNK_VERSION" --root "$TOOLS/trunk"
  fi
  if [ "$("$TOOLS/wasm-bindgen/bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
    log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (once)"
    # Not --locked: its lock file pins crates that no longer build; the version must equal web/Cargo.lock's.
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$TOOLS/wasm-bindgen"
  fi
  if [ "$("$TOOLS/binaryen/node_modules/.bin/wasm-opt" --version 2>/dev/null | grep -o 'version [0-9]*')" != "version ${BINARYEN_VERSION%%.*}" ]; then
    log "installing binaryen $BINARYEN_VERSION (wasm-opt; Debian's is too old and breaks the app)"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/binaryen" "binaryen@$BINARYEN_VERSION" >/dev/null
  fi
  export PATH="$TOOLS/trunk/bin:$TOOLS/wasm-bindgen/bin:$TOOLS/binaryen/node_modules/.bin:$PATH"
  export TRUNK_SKIP_VERSION_CHECK=true
}

# Builds the console (release, wasm-opt) into web/dist and prints the gzipped wasm size.
build_console() {
  log "building the web console"
  (cd "$ROOT/web" && cargo fetch --locked --target wasm32-unknown-unknown >/dev/null)
  (cd "$ROOT" && trunk build --release --offline --locked)
  local wasm
  wasm="$(ls "$ROOT"/web/dist/*.wasm | head -1)"
  log "console wasm: $(stat -c %s "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) bytes gzipped"
  export SNAPGRES_CONSOLE_DIR="$ROOT/web/dist"
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust (rustup) first" >&2
    exit 1
  fi
}

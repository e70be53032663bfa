# Sourced by the test and demo scripts: installs what is missing, idempotently.
# - rustfmt, clippy and the wasm32 target (rustup)
# - a Vulkan driver for wgpu when the machine has none (Mesa's lavapipe, a CPU Vulkan)
# - with PMEDIT_WEB=1 (the test script): Chromium and Node for the browser tests, trunk and the
#   wasm-bindgen CLI of exactly Cargo.lock's version, playwright-core and binaryen 132's wasm-opt
#   (for `trunk build --release`; Debian's binaryen 108 writes a wasm that fails at run time), both
#   from npm into ~/.cache/pmedit-npm
_pm_have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
_pm_apt=()
if command -v dpkg-query >/dev/null 2>&1; then
  _pm_have_pkg mesa-vulkan-drivers || _pm_apt+=(mesa-vulkan-drivers)
  _pm_have_pkg libvulkan1 || _pm_apt+=(libvulkan1)
  if [ "${PMEDIT_WEB:-0}" = 1 ]; then
    _pm_have_pkg chromium || _pm_apt+=(chromium)
    command -v npm >/dev/null 2>&1 || _pm_apt+=(nodejs npm)
  fi
fi
if [ ${#_pm_apt[@]} -gt 0 ]; then
  echo "installing ${_pm_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${_pm_apt[@]}" >/dev/null
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown
fi
if [ "${PMEDIT_WEB:-0}" = 1 ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
  # Tools built once into ~/.cargo/bin (their own target dir, so the project cache stays small).
  _pm_bindgen="$(sed -n '/^name = "wasm-bindgen"$/{n;s/version = "\(.*\)"/\1/p}' Cargo.lock)"
  if ! wasm-bindgen --version 2>/dev/null | grep -q " $_pm_bindgen\b"; then
    # Without --locked: wasm-bindgen-cli's own lock file pins a crate version that some registry
    # mirrors do not carry.
    CARGO_TARGET_DIR="$HOME/.cache/cargo-install-target" cargo install wasm-bindgen-cli --version "$_pm_bindgen" --force
  fi
  if ! trunk --version 2>/dev/null | grep -q "0.21.14"; then
    CARGO_TARGET_DIR="$HOME/.cache/cargo-install-target" cargo install trunk --version 0.21.14 --locked --force
  fi
  PMEDIT_NPM="$HOME/.cache/pmedit-npm"
  [ -d "$PMEDIT_NPM/node_modules/playwright-core" ] || npm install --silent --prefix "$PMEDIT_NPM" playwright-core@1
  # The browser tests' accessibility scan.
  [ -f "$PMEDIT_NPM/node_modules/axe-core/axe.min.js" ] || npm install --silent --prefix "$PMEDIT_NPM" axe-core@4
  "$PMEDIT_NPM/node_modules/.bin/wasm-opt" --version 2>/dev/null | grep -q "version_132" \
    || npm install --silent --prefix "$PMEDIT_NPM" binaryen@132.0.0
  export PLAYWRIGHT_CORE="$PMEDIT_NPM/node_modules/playwright-core"
  export PATH="$PMEDIT_NPM/node_modules/.bin:$PATH"
fi

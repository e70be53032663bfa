# Sourced by the test and demo scripts: installs what is missing, idempotently.
# - rustfmt, clippy and the wasm32 target (rustup)
# - a Vulkan driver for wgpu when the machine has none (Mesa's lavapipe, a CPU Vulkan)
_pm_have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
_pm_apt=()
if command -v dpkg-query >/dev/null 2>&1; then
  _pm_have_pkg mesa-vulkan-drivers || _pm_apt+=(mesa-vulkan-drivers)
  _pm_have_pkg libvulkan1 || _pm_apt+=(libvulkan1)
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

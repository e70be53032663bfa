#!/usr/bin/env bash
# The page with a GPT2-XL-shaped model on a lent GPU machine, end to end: headless Chromium on the
# machine's GPU (Vulkan, no display) loads the model through the page's file input, predicts,
# applies one ROME edit and predicts again (tests/browser/check.mjs), and the same prediction is
# made natively for comparison. Not part of CI.
#
#   scripts/device-browser.sh --prepare [DIR]   here: pack what the machine lacks into DIR/p1 … pN
#   bash DIR/p1/device-browser.sh --stage      there, first call: keep part 1, start the model
#   bash DIR/pK/device-browser.sh --stage      there, the next calls: keep part K
#   bash DIR/pN/device-browser.sh --run        there, last call: unpack, check, write $OUT
#
# What travels to such a machine is the working tree plus carried paths, 64 MiB a call, and it
# starts with no browser, Node or Rust: Chromium (297 MB), its libraries, Node, playwright-core,
# the built page and a stripped pmedit are packed here (xz, ≈ 175 MB) into parts of ≤ 62 MiB,
# carried one a call while the machine stays warm (it is kept 30 s after a call). The working
# tree must be nearly empty for those calls (e.g. an orphan branch with one small file, and `/*`
# in .git/info/exclude). Part 1 starts `pmedit random-model` (f16), the layer's statistics and
# the native prediction in the background, so the model is made while the other parts travel.
#
# Variables: PMEDIT_LAYER (17), PMEDIT_TOKENS (8000), PMEDIT_STEPS (2), PMEDIT_TIMEOUT (300 s for
# each wait in the page), PMEDIT_DEADLINE (520 s: the last call's check ends by then),
# PMEDIT_PROMPT, PMEDIT_ADAPTER (nvidia: a word the adapter's line must hold), PMEDIT_SHAPE
# ("--shape gpt2-xl"), PMEDIT_GPU (hardware). A rehearsal without a GPU: PMEDIT_GPU=software
# PMEDIT_ADAPTER= PMEDIT_SHAPE="--shape gpt2-small --n-layer 2" PMEDIT_LAYER=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
stage=/tmp/pmedit-stage
box=/tmp/pmedit-box
layer="${PMEDIT_LAYER:-17}" tokens="${PMEDIT_TOKENS:-8000}" steps="${PMEDIT_STEPS:-2}"
wait_s="${PMEDIT_TIMEOUT:-300}" deadline="${PMEDIT_DEADLINE:-520}" gpu="${PMEDIT_GPU:-hardware}"
want="${PMEDIT_ADAPTER-nvidia}" shape="${PMEDIT_SHAPE:---shape gpt2-xl}"
prompt="${PMEDIT_PROMPT:-The Eiffel Tower is located in the city of}"
t0=$(date +%s)
# Chromium switches for a hardware GPU without a display, tried in this order; empty = check.mjs's
# own (ANGLE on Vulkan, no surface), which worked on an H200.
switches=(
  ""
  "--use-angle=swiftshader --enable-features=Vulkan --disable-vulkan-surface --ignore-gpu-blocklist --disable-gpu-sandbox"
  "--enable-features=Vulkan,VulkanFromANGLE,DefaultANGLEVulkan --use-vulkan=native --ignore-gpu-blocklist --disable-gpu-sandbox"
)
say() { echo "[$(($(date +%s) - t0)) s] $*" >&2; }

prepare() {
  local root dir lib
  root=$(cd "$here/.." && pwd)
  dir="${1:-$root/.device-browser}"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pmedit-target}"
  (cd "$root" && cargo build --bin pmedit >&2 && PMEDIT_WEB=1 source scripts/setup.sh >&2 && trunk build >&2)
  rm -rf "$dir" && mkdir -p "$dir"/{p1,work}
  local w="$dir/work"
  strip -o "$w/pmedit" "$CARGO_TARGET_DIR/debug/pmedit" && xz -T0 -6 "$w/pmedit"
  xz -T0 -6 -c /usr/lib/chromium/chromium > "$w/chromium.xz"
  # Chromium's own files beside its binary (one locale), and every library it and Node link
  # against except glibc's and the compiler's, which the machine has in newer versions.
  mkdir -p "$w/chromium/locales"
  (cd /usr/lib/chromium && cp -a chrome_100_percent.pak chrome_200_percent.pak chrome_crashpad_handler icudtl.dat \
    libEGL.so libGLESv2.so libvk_swiftshader.so vk_swiftshader_icd.json libvulkan.so.1 resources.pak \
    snapshot_blob.bin v8_context_snapshot.bin "$w/chromium/" && cp locales/en-US.pak "$w/chromium/locales/")
  # Chromium stops ("SkFontMgr … Not implemented") where fontconfig finds no font at all.
  mkdir -p "$w/chromium/fonts"
  cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf \
    /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf "$w/chromium/fonts/"
  tar -C "$w" -cJf "$w/chromium-files.tar.xz" chromium
  lib="$w/lib"
  mkdir -p "$lib"
  ldd /usr/lib/chromium/chromium /usr/lib/chromium/chrome_crashpad_handler /usr/bin/node | awk '/=>/{print $1, $3}' |
    sort -u | while read -r so path; do
      case "$so" in libc.so*|libm.so*|libpthread*|libdl.so*|libresolv*|librt.so*|ld-linux*|libgcc_s*|libstdc++*) ;;
        *) cp -L "$path" "$lib/$so" ;; esac
    done
  tar -C "$w" -cJf "$w/lib.tar.xz" lib
  xz -T0 -6 -c /usr/bin/node > "$w/node.xz"
  tar -C "$HOME/.cache/pmedit-npm/node_modules" -cJf "$w/playwright-core.tar.xz" playwright-core
  # The page as built, and the scripts that drive it, in the repository's layout.
  mkdir -p "$w/site/tests/browser" "$w/site/web"
  cp "$root"/tests/browser/{check,serve}.mjs "$w/site/tests/browser/"
  cp -r "$root/web/dist" "$w/site/web/"
  tar -C "$w" -cJf "$w/site.tar.xz" site
  # Part 1 first holds what starts the model (binary, corpus, edit); Chromium's binary goes last,
  # in 8 MiB pieces that fill each part up to 62 MiB.
  split -b 8M -d -a 3 "$w/chromium.xz" "$w/chromium.xz."
  rm "$w/chromium.xz"
  ls "$w"/chromium.xz.[0-9]* | wc -l > "$w/chromium.pieces"
  printf '%s\n' '[{"prompt": "{} is located in the city of", "subject": "The Eiffel Tower", "target_new": " Rome"}]' \
    > "$w/request.json"
  compgen -G "$root/.gl/*.deb" > /dev/null ||
    echo "device-browser: no .gl/*.deb (the Vulkan loader packages: in .gl/, apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2); packing without them" >&2
  local part=1 f
  for f in "$w/pmedit.xz" "$root/public/corpus/wikitext-excerpt.txt" "$w/request.json" "$w/chromium.pieces" "$root"/.gl/*.deb \
    "$w"/{lib,chromium-files,playwright-core,site}.tar.xz "$w/node.xz" "$w"/chromium.xz.[0-9]*; do
    [ -f "$f" ] || continue
    [ -f "$dir/p$part/device-browser.sh" ] || cp "$self" "$dir/p$part/"
    if [ $(( $(du -cb "$dir/p$part" | tail -1 | cut -f1) + $(stat -c %s "$f") )) -gt $((62 << 20)) ]; then
      part=$((part + 1))
      mkdir -p "$dir/p$part" && cp "$self" "$dir/p$part/"
    fi
    cp "$f" "$dir/p$part/"
  done
  rm -rf "$w"
  du -sh "$dir"/p* >&2
  echo "carry $dir/p1 … p$part in that order: --stage for each but the last, --run for the last" >&2
}

# Keeps a carried part where the next calls find it; part 1 also starts the native work.
stage_part() {
  mkdir -p "$stage"
  cp "$here"/* "$stage/"
  say "staged $(basename "$here"): $(du -sh "$stage" | cut -f1)"
  if [ -f "$here/pmedit.xz" ]; then
    mkdir -p "$box"
    xz -dc "$here/pmedit.xz" > "$box/pmedit" && chmod +x "$box/pmedit"
    setsid bash "$stage/device-browser.sh" --native > "$stage/native.log" 2>&1 < /dev/null &
  fi
  nproc >&2; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null >&2 || true
}

# The model, its statistics and the native prediction (run in the background by part 1).
native() {
  local p="$box/pmedit" s
  s=$(date +%s)
  "$p" --device cpu --dtype f16 random-model $shape --out "$box/xl" >&2
  echo "model_s $(($(date +%s) - s))" >> "$stage/times"
  s=$(date +%s)
  "$p" --device cpu --dtype f16 stats --model "$box/xl" --corpus "$stage/wikitext-excerpt.txt" --layers "$layer" \
    --max-tokens "$tokens" --out "$box/stats.safetensors" >&2
  echo "stats_s $(($(date +%s) - s))" >> "$stage/times"
  s=$(date +%s)
  "$p" --device cpu --dtype f16 predict --model "$box/xl" --prompt "$prompt" --top-k 5 --json > "$box/native.json"
  echo "native_predict_s $(($(date +%s) - s))" >> "$stage/times"
  touch "$stage/native.done"
}

run() {
  local out="$box/out" lib
  mkdir -p "$out" "$box"
  # What comes back from such a machine is a few files: everything in one archive, the JSON apart.
  if [ -n "${OUT:-}" ]; then
    trap 'tar -C "$box/out" -czf "$OUT/device-browser.tgz" . ; cp "$box"/out/*.json "$OUT/" 2>/dev/null || true' EXIT
  fi
  cp "$here"/* "$stage/" 2>/dev/null || true
  cd "$box"
  # The Vulkan and GL dispatch libraries (.gl's packages) and the NVIDIA driver's Vulkan ICD.
  local nv=/usr/local/nvidia/share
  if command -v nvidia-smi > /dev/null; then
    for f in "$stage"/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
    ldconfig || true
  fi
  if [ -f "$nv/vulkan/icd.d/nvidia_icd.json" ]; then
    export VK_DRIVER_FILES="$nv/vulkan/icd.d/nvidia_icd.json" VK_ICD_FILENAMES="$nv/vulkan/icd.d/nvidia_icd.json"
    export __EGL_VENDOR_LIBRARY_FILENAMES="$nv/glvnd/egl_vendor.d/10_nvidia.json"
  fi
  local pieces
  pieces=$(ls "$stage"/chromium.xz.[0-9]* | wc -l)
  if [ "$pieces" != "$(cat "$stage/chromium.pieces")" ]; then
    say "only $pieces of $(cat "$stage/chromium.pieces") pieces of Chromium arrived: carry every part first"
    exit 1
  fi
  cat "$stage"/chromium.xz.[0-9]* | xz -d > "$box/chromium-bin"
  for t in lib chromium-files playwright-core site; do tar -C "$box" -xJf "$stage/$t.tar.xz"; done
  mv "$box/chromium-bin" "$box/chromium/chromium" && chmod +x "$box/chromium/chromium"
  xz -dc "$stage/node.xz" > "$box/node" && chmod +x "$box/node"
  lib="$box/lib"
  export LD_LIBRARY_PATH="$lib:$box/chromium" HOME="$box/home" XDG_RUNTIME_DIR="$box/run"
  mkdir -p "$HOME" "$XDG_RUNTIME_DIR"
  export CHROMIUM="$box/chromium/chromium" PLAYWRIGHT_CORE="$box/playwright-core"
  printf '<?xml version="1.0"?>\n<fontconfig><dir>%s</dir><cachedir>%s</cachedir></fontconfig>\n' \
    "$box/chromium/fonts" "$box/fontcache" > "$box/fonts.conf"
  export FONTCONFIG_FILE="$box/fonts.conf"
  say "unpacked; $("$CHROMIUM" --version 2>&1 | head -1)"
  while [ ! -f "$stage/native.done" ] && [ $(($(date +%s) - t0)) -lt 300 ]; do sleep 2; done
  cp "$stage/native.log" "$stage/times" "$out/" 2>/dev/null || true
  cp "$box/native.json" "$out/native.json" 2>/dev/null || true
  [ -f "$stage/native.done" ] || { say "the native model is not ready"; tail -5 "$stage/native.log" >&2; exit 1; }
  say "native: $(tr '\n' ' ' < "$stage/times")"
  cd "$box/site"
  # First the built-in model alone (seconds) under each set of switches until one gets the
  # hardware adapter, then the XL check with that set.
  set +e
  local n=0 flags
  for flags in "${switches[@]}"; do
    n=$((n + 1))
    PMEDIT_CHROMIUM_FLAGS="$flags" timeout 90 "$box/node" tests/browser/check.mjs web/dist web/dist/models/demo \
      --gpu "$gpu" --require-adapter "$want" --timeout 45 > "$out/probe$n.json" 2> "$out/probe$n.log"
    say "probe $n (${flags:-check.mjs default}): $(tail -1 "$out/probe$n.json")"
    grep -q '"error":null' "$out/probe$n.json" && break
  done
  export PMEDIT_CHROMIUM_FLAGS="$flags"
  local left=$((t0 + deadline - $(date +%s)))
  timeout $((left > 30 ? left : 30)) "$box/node" tests/browser/check.mjs web/dist "$box/xl" --gpu "$gpu" \
    --require-adapter "$want" \
    --stats "$box/stats.safetensors" --edit "$stage/request.json" --layers "$layer" --steps "$steps" \
    --prompt "$prompt" --timeout "$wait_s" > "$out/xl-browser.json" 2> "$out/xl-browser.log"
  say "xl: $(tail -1 "$out/xl-browser.json")"
  # The page's top 5 against the native prediction of the same file.
  python3 - "$out/native.json" "$out/xl-browser.json" <<'PY' | tee "$out/compare.json" >&2
import json, sys
native = json.load(open(sys.argv[1]))["top_k"][:5]
page = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])["top5"] or []
print(json.dumps({"ids_equal": [t["id"] for t in native] == [t["id"] for t in page] if page else None,
                  "max_abs_logprob_diff": max((abs(a["logprob"] - b["logprob"]) for a, b in zip(native, page)), default=None)}))
PY
  nvidia-smi --query-gpu=memory.used --format=csv,noheader 2>/dev/null >&2 || true
}

case "${1:-}" in
  --prepare) prepare "${2:-}" ;;
  --stage) stage_part ;;
  --native) native ;;
  --run) run ;;
  *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

#!/usr/bin/env bash
# The suite on 64-bit ARM, under emulation (tools/test.sh runs this as its last stage):
#   1. cross-builds everything for aarch64 Linux (cmake/aarch64-linux-gnu.cmake), the CLI static
#      (all but the converter, a host tool: the host's serves the tests);
#   2. runs the whole ctest suite under qemu-aarch64 emulating a CPU with dotprod, i8mm and fp16
#      (qemu's "max"): every NEON table runs;
#   3. runs it again emulating a Cortex-A53 (no dotprod): the baseline table must carry the engine
#      and the dotprod/i8mm tables are skipped, not trapped;
#   4. the static binary generates text from a freshly converted model with nothing else around.
# Timing under emulation means nothing: no speed figures come from here.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh --test
jobs=$(nproc)

# The converter is a host tool: it links the SentencePiece library, which Debian does not ship for
# arm64 beside the host's, so the cross build has none. Its tests and the last step below use the
# host's (an .mlm file is the same on every architecture).
[[ -f build/CMakeCache.txt ]] || tools/quickstart.sh --configure-only build
cmake --build build -j"$jobs" --target mobilellm-convert
convert=$PWD/build/mobilellm-convert

cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DMOBILELLM_HOST_CONVERTER="$convert" \
  -DCMAKE_BUILD_TYPE=Release -DMOBILELLM_STATIC=ON -DMOBILELLM_BUILD_TESTS=ON -DMOBILELLM_BUILD_BENCH=ON \
  -DMOBILELLM_SANITIZE=OFF -DMOBILELLM_FUZZ=OFF >/dev/null
cmake --build build-aarch64 -j"$jobs"

for cpu in max cortex-a53; do
  echo "== aarch64 tests under qemu -cpu $cpu" >&2
  (cd build-aarch64 && QEMU_CPU=$cpu ctest --output-on-failure --no-tests=error -j"$jobs")
done

# A static binary, one file, as on a phone: the host converter turns a test checkpoint into q8_0,
# then the binary, alone in a folder with the models and run without any sysroot, generates from
# that model and from the bundled demo.
bin=build-aarch64/mobilellm
file "$bin" | grep -q "statically linked" || { echo "error: $bin is not statically linked" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$bin" models/demo-austen.mlm "$tmp/"
"$convert" build-aarch64/fixtures/ls-gqa3-tied-bin-f32/hf --dtype q8_0 -q -o "$tmp/converted-q8_0.mlm"
for cpu in max cortex-a53; do
  for model in converted-q8_0.mlm demo-austen.mlm; do
    echo "== static aarch64 mobilellm, qemu -cpu $cpu, $model" >&2
    (cd "$tmp" && env -i QEMU_CPU=$cpu qemu-aarch64 ./mobilellm generate -m "$model" \
       -p "It is a truth universally acknowledged" -n 24 --temp 0 -v)
  done
done

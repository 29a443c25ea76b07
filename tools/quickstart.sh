#!/usr/bin/env bash
# Quick start: install what is missing, build, and generate text from the bundled demo model.
#   tools/quickstart.sh [PROMPT [N]]
#   tools/quickstart.sh --configure-only DIR   only configure DIR as the quick start does (the
#                                              test suite's newcomer-order check uses it)
# The configure line states every option it relies on, and so does tools/test.sh's: whichever of
# the two ran last in build/, the next one gets the tree it needs (a cached OFF from here used to
# leave test.sh with no tests to run).
set -euo pipefail
cd "$(dirname "$0")/.."
configure() {
  cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=Release -DMOBILELLM_BUILD_TESTS=OFF \
    -DMOBILELLM_BUILD_BENCH=OFF -DMOBILELLM_SANITIZE=OFF -DMOBILELLM_FUZZ=OFF >/dev/null
}
if [[ "${1:-}" == "--configure-only" ]]; then
  configure "${2:?--configure-only needs a build directory}"
  exit 0
fi
tools/install-deps.sh
configure build
cmake --build build -j"$(nproc)" --target mobilellm mobilellm-convert
build/mobilellm generate -p "${1:-It is a truth universally acknowledged, that}" -n "${2:-80}"

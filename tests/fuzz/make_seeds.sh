#!/usr/bin/env bash
# Remakes the committed seed corpora of tests/fuzz/corpus/ from real files: the converter's
# outputs and the PyTorch reference's checkpoints (tools/reference.py fixtures in a release build
# tree) and the bundled demo model's tokenizer. Larger real files (the demo model, the LLaMA 32k
# tokenizer in ../shared) are not copied: tests/fuzz/<target>.seeds names them for tools/fuzz.sh.
#   tests/fuzz/make_seeds.sh [BUILD]   (default build/; needs its fixtures and mobilellm-convert)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
fx=$build/fixtures
[[ -x $build/mobilellm-convert && -d $fx/gqa3-bin-f16-sharded ]] ||
  { echo "make_seeds.sh: needs $build/mobilellm-convert and $fx (run the tests once)" >&2; exit 1; }
c=tests/fuzz/corpus
mkdir -p "$c/fuzz_model_file" "$c/fuzz_tokenizer" "$c/fuzz_unpickle"

# The loader: a tiny GQA checkpoint converted to each weight type and layout.
for dtype in f16 q8_0 q4_0; do
  "$build/mobilellm-convert" "$fx/gqa3-bin-f16-sharded/hf" --dtype "$dtype" -q --force \
    -o "$c/fuzz_model_file/gqa3-$dtype.mlm"
done
"$build/mobilellm-convert" "$fx/gqa3-bin-f16-sharded/hf" --dtype q8_0 --layout rows -q --force \
  -o "$c/fuzz_model_file/gqa3-q8_0-rows.mlm"

# The tokenizer: the fixtures' trained BPE model and the demo model's own.
cp "$fx/tiny.model" "$c/fuzz_tokenizer/fixture-bpe.model"
python3 - models/demo-austen.mlm "$c/fuzz_tokenizer/demo-austen.model" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
# format.h: the header's table_offset (u64 at 24) and tensor_count (u32 at 32); 128-byte entries,
# name (48 bytes) first, offset and nbytes the u64s at 96 and 104.
table, count = struct.unpack_from("<QI", b, 24)
for i in range(count):
    e = b[table + 128 * i: table + 128 * (i + 1)]
    if e[:48].rstrip(b"\0") == b"tokenizer":
        off, n = struct.unpack_from("<QQ", e, 96)
        open(sys.argv[2], "wb").write(b[off:off + n])
        break
else:
    sys.exit("no tokenizer tensor")
PY

# The unpickler, zip and safetensors readers: a torch zip shard, its bare pickle, a safetensors shard.
cp "$fx/gqa3-bin-f16-sharded/hf/pytorch_model-00003-of-00003.bin" "$c/fuzz_unpickle/shard.bin"
python3 - "$c/fuzz_unpickle/shard.bin" "$c/fuzz_unpickle/data.pkl" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
open(sys.argv[2], "wb").write(z.read(next(n for n in z.namelist() if n.endswith("/data.pkl"))))
PY
cp "$fx/ls-tied-st-f16-sharded/hf/model-00002-of-00002.safetensors" "$c/fuzz_unpickle/shard.safetensors"
ls -la "$c"/*/ >&2

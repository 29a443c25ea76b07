#!/usr/bin/env python3
"""SentencePiece reference for mobilellm.cpp's tokenizer: a tiny tokenizer and golden ids.

    python3 tools/tokenizer_reference.py OUT_DIR [--shared ../shared]

Trains OUT_DIR/tiny.model (BPE, 400 pieces, byte fallback, on tests/testdata/corpus.txt) and
writes OUT_DIR/tokenizer_golden.json: for it and for shared/tokenizers/llama-32k.model (when
present), the ids Python SentencePiece gives each test string and the text it decodes them to.
Needs sentencepiece, not PyTorch, so the tokenizer tests do not wait for the PyTorch fixtures
(tools/reference.py, which trains its tiny tokenizer with the same function). Output is skipped
when OUT_DIR/stamp matches this script's inputs.
"""
import argparse
import hashlib
import json
import os
import shutil

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TOKENIZER_STRINGS = [
    "Hello world", "  leading and   inner   spaces", "trailing spaces   ", "digits 1234567890 and 3.14159",
    "tabs\tand\nnew\nlines", "emoji 😀🎉 and ❤️", "日本語のテキスト", "Русский текст", "العربية", "मराठी",
    "mixed: café naïve résumé", "byte fallback: \u0001\u0002 \U0001F9EC", "", " ", "a", "<s> </s> <unk> literal",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune",
    "\u2581 the block itself, \u2581\u2581 twice", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "\n\n\n", "x  \t  y",
    "Hello<0x41>world <s>", "00000000001111111111", "Mr. Darcy's \u201cpride\u201d \u2014 and Elizabeth\u2019s prejudice\u2026",
]


def train_tiny_tokenizer(out_dir):
    prefix = os.path.join(out_dir, "tiny")
    spm.SentencePieceTrainer.train(
        input=os.path.join(ROOT, "tests/testdata/corpus.txt"), model_prefix=prefix, model_type="bpe",
        vocab_size=400, byte_fallback=True, split_digits=True, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    return prefix + ".model"


def make_tokenizer_goldens(out_dir, tiny, shared):
    # A long case too: 20,000 characters of held-out Austen exercise the merge order at scale.
    long_text = open(os.path.join(ROOT, "models/demo-heldout.txt"), encoding="utf-8").read()[:20000]
    golden = {}
    for name, path in [("tiny", tiny), ("llama-32k", os.path.join(shared, "tokenizers/llama-32k.model"))]:
        if not os.path.exists(path):
            continue
        sp = spm.SentencePieceProcessor(model_file=path)
        golden[name] = {"model": os.path.abspath(path), "cases": [
            {"text": s, "ids": sp.encode(s), "decoded": sp.decode(sp.encode(s))} for s in TOKENIZER_STRINGS + [long_text]]}
    with open(os.path.join(out_dir, "tokenizer_golden.json"), "w") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    a = ap.parse_args()
    h = hashlib.sha256()
    for p in [__file__, os.path.join(ROOT, "tests/testdata/corpus.txt"), os.path.join(ROOT, "models/demo-heldout.txt")]:
        h.update(open(p, "rb").read())
    llama = os.path.join(a.shared, "tokenizers/llama-32k.model")
    h.update(os.path.abspath(a.shared).encode() + str(os.path.exists(llama)).encode())
    stamp = os.path.join(a.out_dir, "stamp")
    if os.path.exists(stamp) and open(stamp).read() == h.hexdigest():
        print("tokenizer fixtures up to date in", a.out_dir)
        return
    if os.path.exists(a.out_dir):
        shutil.rmtree(a.out_dir)
    os.makedirs(a.out_dir)
    make_tokenizer_goldens(a.out_dir, train_tiny_tokenizer(a.out_dir), a.shared)
    with open(stamp, "w") as f:
        f.write(h.hexdigest())
    print("tokenizer fixtures written to", a.out_dir)


if __name__ == "__main__":
    main()

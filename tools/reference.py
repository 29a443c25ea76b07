#!/usr/bin/python3
"""PyTorch reference for mobilellm.cpp: writes test checkpoints and golden outputs.

    /usr/bin/python3 tools/reference.py fixtures OUT_DIR [--shared ../shared]

For every case below it writes OUT_DIR/<case>/hf/ (an HF checkpoint directory: config.json,
tokenizer.model, pytorch_model.bin or model.safetensors, possibly sharded) and
OUT_DIR/<case>/golden.json: the prompt ids, the last-token logits and 32 greedy tokens computed by
tools/mobilellm_torch.py in fp32 on exactly the weights stored in the checkpoint. It also writes a
malicious checkpoint (its pickle calls os.system) and broken checkpoints for the converter's
errors. (Tokenizer goldens: tools/tokenizer_reference.py, which needs no PyTorch.) The C++ tests read all of it; CI regenerates it
on every run, so the goldens cannot go stale. Output is skipped when OUT_DIR/stamp matches this
script's hash.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
import sentencepiece as spm  # noqa: E402

from mobilellm_torch import Config, Llama4Config, Llama4Text, MobileLLM, save_hf  # noqa: E402
from tokenizer_reference import train_tiny_tokenizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name: (config kwargs, checkpoint format, checkpoint dtype, shards, init std, extra)
CASES = {
    # 3:1 GQA, layer sharing, tied head, torch.save'd plain dict, fp32.
    "ls-gqa3-tied-bin-f32": (dict(dim=96, ffn_dim=200, n_blocks=3, n_heads=6, n_kv_heads=2, layer_sharing=True),
                             "bin", torch.float32, 1, 0.15, {}),
    # 2:1 GQA, no sharing, separate lm_head, safetensors fp32.
    "gqa2-untied-st-f32": (dict(dim=64, ffn_dim=176, n_blocks=4, n_heads=4, n_kv_heads=2, lm_head=True),
                           "safetensors", torch.float32, 1, 0.15, {}),
    # The 1B/1.5B layout: share_embedding true *and* an lm_head.weight (which must win); bf16, as
    # HF's save_pretrained writes it (an OrderedDict with _metadata), layer sharing on.
    "ls-lmhead-bin-bf16": (dict(dim=64, ffn_dim=160, n_blocks=2, n_heads=4, n_kv_heads=1, layer_sharing=True, lm_head=True),
                           "bin", torch.bfloat16, 1, 0.15, {"share_embedding": True, "ordered_dict": True}),
    # Sharded safetensors set, fp16, tied, layer sharing.
    "ls-tied-st-f16-sharded": (dict(dim=64, ffn_dim=128, n_blocks=3, n_heads=4, n_kv_heads=2, layer_sharing=True),
                               "safetensors", torch.float16, 2, 0.15, {}),
    # Sharded torch.save set, fp16, no sharing, 3:1 GQA.
    "gqa3-bin-f16-sharded": (dict(dim=48, ffn_dim=96, n_blocks=3, n_heads=3, n_kv_heads=1),
                             "bin", torch.float16, 3, 0.15, {}),
    # The real MobileLLM-125M shape with random N(0, 0.02) weights, fp16 like the HF checkpoint.
    "125m-random-f16": (dict(vocab_size=32000, dim=576, ffn_dim=1536, n_blocks=30, n_heads=9, n_kv_heads=3),
                        "bin", torch.float16, 1, 0.02, {"greedy": 8}),
    # MobileLLM-R1 (Llama4ForCausalLM, tools/mobilellm_torch.py). Tied head, 3:1 GQA, QK-norm, RoPE
    # on every layer with llama3 frequency scaling, full attention (explicit layer_types), eos list,
    # sharded safetensors, fp32.
    "r1-tied-gqa3-llama3-st-f32-sharded": (
        dict(dim=96, ffn_dim=200, n_layers=4, n_heads=6, n_kv_heads=2, tied=True, qk_norm=True,
             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 64},
             layer_types=["full_attention"] * 4, eos_ids=(2, 3, 4)),
        "safetensors", torch.float32, 2, 0.15, {"llama4": True}),
    # Untied head, 4:1 GQA, layer 1 NoPE with temperature tuning (floor_scale 4: the scale steps
    # within the prompt), no layer_types: HF makes the RoPE layers chunked, here in chunks of 16,
    # shorter than the 40-token prompt. bf16 safetensors.
    "r1-untied-gqa4-nope-chunked-st-bf16": (
        dict(dim=128, ffn_dim=192, n_layers=4, n_heads=8, n_kv_heads=2, tied=False, qk_norm=True,
             no_rope_layers=[1, 0, 1, 1], attn_temperature_tuning=True, attn_scale=0.5, floor_scale=4,
             attention_chunk_size=16),
        "safetensors", torch.bfloat16, 1, 0.15, {"llama4": True, "prompt_len": 40}),
    # Explicit layer types mixing full and chunked layers (one of them NoPE, without temperature
    # tuning), no QK-norm, a no_rope_layers list longer than the model (HF reads the first
    # n_layers), chunks of 16 under a 40-token prompt, fp32.
    "r1-mixed-chunked-st-f32": (
        dict(dim=64, ffn_dim=160, n_layers=3, n_heads=4, n_kv_heads=1, tied=True, qk_norm=False,
             no_rope_layers=[1, 1, 0, 1, 1, 1], layer_types=["full_attention", "chunked_attention",
                                                              "chunked_attention"],
             attention_chunk_size=16, rope_theta=8e6),
        "safetensors", torch.float32, 1, 0.15, {"llama4": True, "prompt_len": 40}),
}

def make_case(name, spec, tokenizer, out_dir, seed):
    kwargs, fmt, dtype, shards, std, extra = spec
    sp = spm.SentencePieceProcessor(model_file=tokenizer)
    kwargs = dict(kwargs)
    kwargs.setdefault("vocab_size", sp.get_piece_size())
    torch.manual_seed(seed)
    c = Llama4Config(max_pos=128, **kwargs) if extra.get("llama4") else Config(max_pos=128, **kwargs)
    m = Llama4Text(c) if extra.get("llama4") else MobileLLM(c)
    with torch.no_grad():
        for pname, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, std)
            else:  # RMSNorm weights: around 1, not exactly, so a dropped weight is caught
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
        for p in m.parameters():  # the golden runs on exactly what the checkpoint stores
            p.copy_(p.to(dtype).float())
    case_dir = os.path.join(out_dir, name)
    hf = os.path.join(case_dir, "hf")
    save_hf(m, hf, tokenizer, dtype=dtype, fmt=fmt, shards=shards)
    cfg_path = os.path.join(hf, "config.json")
    cfg = json.load(open(cfg_path))
    if "share_embedding" in extra:
        cfg["share_embedding"] = extra["share_embedding"]
    json.dump(cfg, open(cfg_path, "w"), indent=2)
    if extra.get("ordered_dict"):  # resave as HF save_pretrained does: an OrderedDict with _metadata
        sd = torch.load(os.path.join(hf, "pytorch_model.bin"))
        od = m.state_dict().__class__()
        for k, v in sd.items():
            od[k] = v
        od._metadata = {"": {"version": 1}}
        torch.save(od, os.path.join(hf, "pytorch_model.bin"))

    g = torch.Generator().manual_seed(seed + 1)
    prompt = [1] + torch.randint(3, c.vocab_size, (extra.get("prompt_len", 12) - 1,), generator=g).tolist()
    with torch.no_grad():
        logits = m(torch.tensor([prompt]))[0]
    greedy = m.greedy(prompt, extra.get("greedy", 32))
    golden = {"config": cfg, "prompt_ids": prompt, "last_logits": logits[-1].tolist(),
              "greedy_ids": greedy[len(prompt):], "checkpoint_dtype": str(dtype).replace("torch.", "")}
    with open(os.path.join(case_dir, "golden.json"), "w") as f:
        json.dump(golden, f)
    return m


class Evil:
    """Pickles as a call to os.system: what a malicious checkpoint looks like."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def make_bad(out_dir, good_dir):
    bad = os.path.join(out_dir, "bad")
    os.makedirs(bad, exist_ok=True)
    # Malicious: a torch.save zip whose data.pkl calls os.system("touch <marker>").
    evil = os.path.join(bad, "evil")
    shutil.copytree(good_dir, evil)
    os.unlink(os.path.join(evil, "pytorch_model.bin"))
    marker = os.path.join(bad, "evil-was-executed")
    torch.save({"model.embed_tokens.weight": Evil("touch " + marker)}, os.path.join(evil, "pytorch_model.bin"))
    # Missing tensor, wrong shape, unknown architecture, no weights, truncated zip.
    for name, edit in [("missing-tensor", None), ("bad-shape", ("intermediate_size", 208)),
                       ("bad-arch", ("architectures", ["GPT2LMHeadModel"])), ("no-weights", None), ("truncated", None)]:
        d = os.path.join(bad, name)
        shutil.copytree(good_dir, d)
        if name == "missing-tensor":
            sd = torch.load(os.path.join(d, "pytorch_model.bin"))
            del sd["model.layers.1.mlp.up_proj.weight"]
            torch.save(sd, os.path.join(d, "pytorch_model.bin"))
        elif name == "no-weights":
            os.unlink(os.path.join(d, "pytorch_model.bin"))
        elif name == "truncated":
            p = os.path.join(d, "pytorch_model.bin")
            data = open(p, "rb").read()
            open(p, "wb").write(data[: len(data) // 2])
        if edit:
            cfg = json.load(open(os.path.join(d, "config.json")))
            cfg[edit[0]] = edit[1]
            json.dump(cfg, open(os.path.join(d, "config.json"), "w"))


def fixtures(out_dir, shared):
    h = hashlib.sha256()
    for p in [__file__, os.path.join(HERE, "mobilellm_torch.py"), os.path.join(HERE, "tokenizer_reference.py"), os.path.join(ROOT, "tests/testdata/corpus.txt"),
              os.path.join(ROOT, "models/demo-heldout.txt")]:
        h.update(open(p, "rb").read())
    h.update(os.path.abspath(shared).encode() + str(os.path.exists(os.path.join(shared, "tokenizers/llama-32k.model"))).encode())
    stamp = os.path.join(out_dir, "stamp")
    if os.path.exists(stamp) and open(stamp).read() == h.hexdigest():
        print("fixtures up to date in", out_dir)
        return
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    torch.set_num_threads(1)
    tiny = train_tiny_tokenizer(out_dir)
    for i, (name, spec) in enumerate(CASES.items()):
        make_case(name, spec, tiny, out_dir, seed=1000 + i)
        print("fixture", name, flush=True)
    make_bad(out_dir, os.path.join(out_dir, "ls-gqa3-tied-bin-f32", "hf"))
    with open(stamp, "w") as f:
        f.write(h.hexdigest())
    print("fixtures written to", out_dir)


def r1_llama3(out_dir, tokenizer_dir, prompt_json):
    """An R1-shaped checkpoint on the real Llama-3 tokenizer (tests/bpe/r1_llama3.sh).

    A small Llama4ForCausalLM with R1's vocabulary (128,256), BOS and EOS list, and R1's
    tokenizer.json + tokenizer_config.json (chat template included), saved as bf16 safetensors;
    golden.json holds the prompt's ids (Tokenizers.js's, from prompt_json) and 32 greedy ids."""
    prompt = json.load(open(prompt_json))["ids"]
    c = Llama4Config(vocab_size=128256, dim=64, ffn_dim=160, n_layers=3, n_heads=4, n_kv_heads=2,
                     rope_theta=8e6, bos_id=128000, eos_ids=(128001, 128008, 128009), max_pos=512)
    torch.manual_seed(20261203)
    torch.set_num_threads(1)
    m = Llama4Text(c)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15)
            else:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            p.copy_(p.to(torch.bfloat16).float())
    hf = os.path.join(out_dir, "hf")
    os.makedirs(hf, exist_ok=True)
    save_hf(m, hf, None, dtype=torch.bfloat16, fmt="safetensors")
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copyfile(os.path.join(tokenizer_dir, f), os.path.join(hf, f))
    greedy = m.greedy(prompt, 32)[len(prompt):]
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump({"prompt_ids": prompt, "greedy_ids": greedy, "eos_ids": c.eos_ids}, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures", help="write test checkpoints and goldens")
    f.add_argument("out_dir")
    f.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    r = sub.add_parser("r1-llama3", help="an R1-shaped checkpoint on the real Llama-3 tokenizer")
    r.add_argument("out_dir")
    r.add_argument("--tokenizer-dir", required=True, help="holds tokenizer.json, tokenizer_config.json")
    r.add_argument("--prompt", required=True, help="JSON with the prompt's ids")
    a = ap.parse_args()
    if a.cmd == "fixtures":
        fixtures(a.out_dir, a.shared)
    else:
        r1_llama3(a.out_dir, a.tokenizer_dir, a.prompt)


if __name__ == "__main__":
    main()

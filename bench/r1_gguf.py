#!/usr/bin/python3
"""A random MobileLLM-R1-140M as a llama.cpp `llama4` GGUF, and a check that llama.cpp runs it as HF's Llama-4 text model.

    /usr/bin/python3 bench/r1_gguf.py write --peers WORK/peers --tokenizer tokenizer.json --out DIR
                                            [--types f32,f16,q8_0,q4_0] [--layout nope4|r1] [--seed 0]
    /usr/bin/python3 bench/r1_gguf.py check --peers WORK/peers --gguf DIR/r1-140m-nope4-f32.gguf [--gen 24]

--peers is the copy of shared/peers that bench/compare_llamacpp.py makes (its make_gguf.py gives the
GGUF encodings and quantizers; its node-llama-cpp 3.21.1 runs llama.cpp).

What llama.cpp's `llama4` graph can express (shared/notes/llamacpp-llama4.md, checked against the
source node-llama-cpp 3.21.1 ships): without `sliding_window` it is in chunked mode, where every 4th
layer (index % 4 == 3) is NoPE (no RoPE, no QK-norm, query temperature tuning with floor_scale 8192
and attn_scale 0.1) with full attention, and the others are RoPE + QK-norm with 8192-token chunked
attention. Which layers skip RoPE is not read from the file. Two layouts:

  nope4  15 layers, NoPE at 3, 7, 11: R1-140M's matrices exactly, with HF Llama4TextConfig's default
         layer pattern (no_rope_layer_interval 4) instead of R1's all-RoPE one. No padding: the
         speed comparison's file.
  r1     R1-140M's own semantics (15 RoPE + QK-norm layers, full attention): 19 layers, the NoPE
         slots 3, 7, 11, 15 filled with identity layers (zero attn_output and ffn_down, so they add
         nothing but still cost their time).

Below 8192 positions a chunk is the whole sequence and the temperature factor is 1, so chunked
layers attend as full ones do. The check runs llama.cpp greedily on prompts and compares its ids
with a PyTorch implementation of HF's `modeling_llama4.py` text semantics on the file's own
(dequantized) weights, skipping identity layers.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# MobileLLM-R1-140M (HF config of facebook/MobileLLM-R1-140M).
R1_140M = dict(vocab=128256, dim=576, n_layers=15, n_heads=9, n_kv_heads=3, head_dim=64, ffn=2048, eps=1e-5,
               rope_theta=500000.0, ctx=32768, bos=128000, eos=128001)
KIND_KEY = "mobilellm_bench.layer_kinds"  # R: RoPE + QK-norm; N: NoPE; I: identity (padding)
CHUNK, FLOOR_SCALE, ATTN_SCALE = 8192, 8192, 0.1  # fixed in llama.cpp's llama4 chunked mode


def make_gguf_module(peers):
    sys.path.insert(0, peers)
    import make_gguf  # noqa: E402 (shared/peers/make_gguf.py: GGUF v3 encodings, F32/F16/Q8_0/Q4_0)
    return make_gguf


def layer_kinds(layout, n_real):
    """The kind of each GGUF layer: llama.cpp makes slot i NoPE when (i + 1) % 4 == 0."""
    if layout == "nope4":
        return "".join("N" if (i + 1) % 4 == 0 else "R" for i in range(n_real))
    kinds = ""
    while kinds.count("R") < n_real:
        kinds += "I" if (len(kinds) + 1) % 4 == 0 else "R"
    return kinds


def tokenizer_kvs(mg, path):
    """A Llama-3 tokenizer.json as llama.cpp's BPE vocabulary: model gpt2, pre-tokenizer llama-bpe."""
    with open(path, encoding="utf-8") as f:
        tj = json.load(f)
    vocab = tj["model"]["vocab"]
    n = max(list(vocab.values()) + [t["id"] for t in tj["added_tokens"]]) + 1
    pieces, types = [None] * n, [1] * n  # 1 normal, 3 control, 4 user-defined
    for s, i in vocab.items():
        pieces[i] = s
    for t in tj["added_tokens"]:
        pieces[t["id"]], types[t["id"]] = t["content"], 3 if t["special"] else 4
    if None in pieces:
        sys.exit("%s: token ids are not contiguous (id %d missing)" % (path, pieces.index(None)))
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    return n, [mg._kv("tokenizer.ggml.model", mg.T_STR, "gpt2"), mg._kv("tokenizer.ggml.pre", mg.T_STR, "llama-bpe"),
               mg._kv("tokenizer.ggml.tokens", mg.T_ARR, (mg.T_STR, pieces)),
               mg._kv("tokenizer.ggml.token_type", mg.T_ARR, (mg.T_I32, types)),
               mg._kv("tokenizer.ggml.merges", mg.T_ARR, (mg.T_STR, merges))]


def random_weights(kinds, cfg, seed, std=0.02):
    """GGUF name -> float32 [out, in]: N(0, std) matrices, ones for the norms; identity layers zero their
    attn_output and ffn_down. Layer l's values depend on (seed, l) only."""
    d, q, kv, ff = cfg["dim"], cfg["n_heads"] * cfg["head_dim"], cfg["n_kv_heads"] * cfg["head_dim"], cfg["ffn"]
    rng = np.random.Generator(np.random.PCG64([seed, 0]))
    w = {"token_embd.weight": rng.standard_normal((cfg["vocab"], d), dtype=np.float32) * np.float32(std)}
    for l, kind in enumerate(kinds):
        rng = np.random.Generator(np.random.PCG64([seed, l + 1]))
        p = "blk.%d." % l
        for name, shape in (("attn_q", (q, d)), ("attn_k", (kv, d)), ("attn_v", (kv, d)), ("attn_output", (d, q)),
                            ("ffn_gate", (ff, d)), ("ffn_up", (ff, d)), ("ffn_down", (d, ff))):
            a = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
            w[p + name + ".weight"] = np.zeros_like(a) if kind == "I" and name in ("attn_output", "ffn_down") else a
        w[p + "attn_norm.weight"] = np.ones(d, np.float32)
        w[p + "ffn_norm.weight"] = np.ones(d, np.float32)
    w["output_norm.weight"] = np.ones(d, np.float32)
    return w


def write(mg, path, weights, wtype, embd_type, kinds, cfg, tok_kvs):
    """One llama4 GGUF: dense layers (expert_count 1, interleave_moe_layer_step 0), tied head."""
    a = "llama4."
    kvs = [mg._kv("general.architecture", mg.T_STR, "llama4"),
           mg._kv("general.name", mg.T_STR, "MobileLLM-R1-140M-random"),
           mg._kv("general.file_type", mg.T_U32, mg.FTYPE[wtype]),
           mg._kv("general.alignment", mg.T_U32, mg.ALIGN),
           mg._kv("general.quantization_version", mg.T_U32, 2),
           mg._kv(KIND_KEY, mg.T_STR, kinds),
           mg._kv(a + "vocab_size", mg.T_U32, cfg["vocab"]),
           mg._kv(a + "context_length", mg.T_U32, cfg["ctx"]),
           mg._kv(a + "embedding_length", mg.T_U32, cfg["dim"]),
           mg._kv(a + "block_count", mg.T_U32, len(kinds)),
           mg._kv(a + "feed_forward_length", mg.T_U32, cfg["ffn"]),
           mg._kv(a + "expert_feed_forward_length", mg.T_U32, cfg["ffn"]),
           mg._kv(a + "expert_count", mg.T_U32, 1),  # 0 is refused; no layer is MoE with the step 0
           mg._kv(a + "expert_used_count", mg.T_U32, 1),
           mg._kv(a + "interleave_moe_layer_step", mg.T_U32, 0),
           mg._kv(a + "attention.head_count", mg.T_U32, cfg["n_heads"]),
           mg._kv(a + "attention.head_count_kv", mg.T_U32, cfg["n_kv_heads"]),
           mg._kv(a + "attention.key_length", mg.T_U32, cfg["head_dim"]),
           mg._kv(a + "attention.value_length", mg.T_U32, cfg["head_dim"]),
           mg._kv(a + "rope.dimension_count", mg.T_U32, cfg["head_dim"]),
           mg._kv(a + "rope.freq_base", mg.T_F32, cfg["rope_theta"]),
           mg._kv(a + "attention.layer_norm_rms_epsilon", mg.T_F32, cfg["eps"]),
           mg._kv("tokenizer.ggml.bos_token_id", mg.T_U32, cfg["bos"]),
           mg._kv("tokenizer.ggml.eos_token_id", mg.T_U32, cfg["eos"]),
           mg._kv("tokenizer.ggml.add_bos_token", mg.T_BOOL, True)] + tok_kvs
    infos, blobs, off = [], [], 0
    for n, arr in weights.items():
        t = mg.GGML_F32 if arr.ndim == 1 else mg.GGML_BY_NAME[embd_type if n == "token_embd.weight" else wtype]
        data = mg.encode(arr, t)
        ne = list(reversed(arr.shape))
        infos.append(mg._s(n) + mg.struct.pack("<I%dQIQ" % len(ne), len(ne), *ne, t, off))
        pad = (-len(data)) % mg.ALIGN
        blobs.append(data + b"\0" * pad)
        off += len(data) + pad
    head = mg.GGUF_MAGIC + mg.struct.pack("<IQQ", mg.GGUF_VERSION, len(infos), len(kvs)) + b"".join(kvs + infos)
    head += b"\0" * ((-len(head)) % mg.ALIGN)
    with open(path + ".tmp", "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def gguf_name(layout, wtype):
    return "r1-140m-%s-%s.gguf" % (layout, wtype)


def embd_type_for(wtype):
    """The tied embedding / head's type: as the matrices, except q4_0 files keep it at q8_0, as
    mobilellm-convert does, so both engines read the same head bytes."""
    return "q8_0" if wtype == "q4_0" else wtype


def write_files(peers, tokenizer, out, types, layout="nope4", seed=0, cfg=R1_140M):
    """Writes out/r1-140m-LAYOUT-TYPE.gguf for each type that is missing; returns their paths."""
    mg = make_gguf_module(peers)
    os.makedirs(out, exist_ok=True)
    paths = {t: os.path.join(out, gguf_name(layout, t)) for t in types}
    todo = [t for t in types if not os.path.exists(paths[t])]
    if todo:
        n_vocab, tok_kvs = tokenizer_kvs(mg, tokenizer)
        if n_vocab != cfg["vocab"]:
            sys.exit("%s: %d tokens, expected %d (R1's vocabulary)" % (tokenizer, n_vocab, cfg["vocab"]))
        kinds = layer_kinds(layout, cfg["n_layers"])
        w = random_weights(kinds, cfg, seed)
        for t in todo:
            write(mg, paths[t], w, t, embd_type_for(t), kinds, cfg, tok_kvs)
            print("wrote %s (%.1f MiB, layers %s)" % (paths[t], os.path.getsize(paths[t]) / 2**20, kinds), file=sys.stderr)
    return paths


# ---------------------------------------------------------------- HF Llama-4 text semantics
def hf_llama4_logits(torch, w, kinds, cfg, ids):
    """Last-position logits of HF's Llama4ForCausalLM (text, dense layers, tied head) in f32 over the
    whole sequence `ids`, on GGUF-named weights; identity layers ('I') are not part of the model."""
    F = torch.nn.functional
    T, hd, H, KV = len(ids), cfg["head_dim"], cfg["n_heads"], cfg["n_kv_heads"]
    eps = cfg["eps"]

    def rms(x, weight=None):  # Llama4TextRMSNorm; without a weight, Llama4TextL2Norm (QK-norm)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return x if weight is None else x * weight

    pos = torch.arange(T, dtype=torch.float32)
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.polar(torch.ones(T, hd // 2), pos[:, None] * inv[None, :])  # [T, hd/2] complex

    def rope(x):  # adjacent pairs as complex numbers (HF's apply_rotary_emb)
        xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(xc * freqs[:, None, :]).flatten(-2)

    causal = pos[None, :] <= pos[:, None]
    chunked = causal & ((pos[None, :] // CHUNK) == (pos[:, None] // CHUNK))
    temp = (torch.log1p(torch.floor((pos + 1.0) / FLOOR_SCALE)) * ATTN_SCALE + 1.0)[:, None, None]
    x = w["token_embd.weight"][torch.tensor(ids)]
    for l, kind in enumerate(kinds):
        if kind == "I":
            continue
        g = lambda n: w["blk.%d.%s.weight" % (l, n)]  # noqa: E731
        h = rms(x, g("attn_norm"))
        q, k, v = (h @ g("attn_q").T).view(T, H, hd), (h @ g("attn_k").T).view(T, KV, hd), (h @ g("attn_v").T).view(T, KV, hd)
        if kind == "R":
            q, k = rms(rope(q)), rms(rope(k))  # QK-norm after RoPE, RoPE layers only
        else:
            q = q * temp  # attn_temperature_tuning on NoPE layers
        mask = chunked if kind == "R" else causal  # layer_types: chunked on RoPE layers, full on NoPE
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
        s = torch.einsum("thd,shd->hts", q, k) * hd ** -0.5
        p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
        x = x + torch.einsum("hts,shd->thd", p, v).reshape(T, H * hd) @ g("attn_output").T
        h = rms(x, g("ffn_norm"))
        x = x + (F.silu(h @ g("ffn_gate").T) * (h @ g("ffn_up").T)) @ g("ffn_down").T
    return w["token_embd.weight"] @ rms(x[-1], w["output_norm.weight"])


def torch_greedy(peers, gguf, prompts, ns):
    """PyTorch's greedy ids for each prompt: ns[i] ids after prompts[i]."""
    import torch
    torch.set_num_threads(1)  # the host is shared: more threads than free cores only thrash
    mg = make_gguf_module(peers)
    kv, arrays = mg.load_f32(gguf)
    w = {k: torch.from_numpy(a) for k, a in arrays.items()}
    cfg = dict(R1_140M, n_heads=kv["llama4.attention.head_count"], n_kv_heads=kv["llama4.attention.head_count_kv"],
               head_dim=kv["llama4.rope.dimension_count"], eps=kv["llama4.attention.layer_norm_rms_epsilon"],
               rope_theta=kv["llama4.rope.freq_base"])
    res = []
    with torch.no_grad():
        for ids, n in zip(prompts, ns):
            seq, out = list(ids), []
            for _ in range(n):
                out.append(int(torch.argmax(hf_llama4_logits(torch, w, kv[KIND_KEY], cfg, seq))))
                seq.append(out[-1])
            res.append(out)
    return res


def llamacpp_greedy(peers, gguf, prompts, ns, threads=1):
    """llama.cpp's greedy ids for each prompt, and those among them it takes for end of generation."""
    out = subprocess.run(["node", os.path.join(HERE, "llamacpp_greedy.mjs"), "--peers", peers, "--model", gguf, "--ids",
                          ";".join(",".join(map(str, p)) for p in prompts), "--n", ",".join(map(str, ns)),
                          "--threads", str(threads)], check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["tokens"], r["eog"]


def bench_prompt(n=128):
    """bench_llamacpp.mjs's prompt: id 1, then a deterministic id sequence."""
    return [1] + [300 + (i * 7919) % 31000 for i in range(1, n)]


def check_prompts(n_cont=24, n_single=24, bos=R1_140M["bos"]):
    """A 32-token prompt continued greedily for n_cont ids (random weights soon settle on a repeated id,
    so that alone tests little), then n_single prompts of 8-31 tokens, one greedy id each."""
    prompts = [[bos] + [300 + (i * 7919) % 31000 for i in range(1, 32)]]
    for k in range(n_single):
        prompts.append([bos] + [300 + (i * 7919 + k * 104729) % 127000 for i in range(1, 8 + k)])
    return prompts, [n_cont] + [1] * n_single


def check(peers, gguf, gen=24):
    """(llama.cpp ids, PyTorch ids) on check_prompts(): equal when llama.cpp runs the file as HF would."""
    prompts, ns = check_prompts(gen, gen)
    return llamacpp_greedy(peers, gguf, prompts, ns)[0], torch_greedy(peers, gguf, prompts, ns)


def summary(name, ll, ref):
    """How many ids agree: the continuation's, and the single-id prompts'."""
    return {"gguf": name, "continuation_equal": sum(x == y for x, y in zip(ll[0], ref[0])), "continuation_of": len(ref[0]),
            "single_equal": sum(x == y for x, y in zip(ll[1:], ref[1:])), "single_of": len(ref) - 1,
            "continuation_ids": ref[0], "single_ids": [r[0] for r in ref[1:]],
            "mismatches": [[i, x, y] for i, (x, y) in enumerate(zip(ll, ref)) if x != y]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--peers", required=True)
    w.add_argument("--tokenizer", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--types", default="f32,f16,q8_0,q4_0")
    w.add_argument("--layout", choices=["nope4", "r1"], default="nope4")
    w.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("check")
    c.add_argument("--peers", required=True)
    c.add_argument("--gguf", required=True)
    c.add_argument("--gen", type=int, default=24)
    a = ap.parse_args()
    if a.cmd == "write":
        write_files(os.path.abspath(a.peers), a.tokenizer, a.out, a.types.split(","), a.layout, a.seed)
        return 0
    ll, ref = check(os.path.abspath(a.peers), os.path.abspath(a.gguf), a.gen)
    print(json.dumps(summary(os.path.basename(a.gguf), ll, ref)))
    return 0 if ll == ref else 1


if __name__ == "__main__":
    sys.exit(main())

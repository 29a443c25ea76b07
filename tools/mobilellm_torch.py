"""MobileLLM in PyTorch with HuggingFace semantics: the oracle the C++ engine is tested against.

What it is: the decoder of facebookresearch/MobileLLM (`utils/modeling_llama.py`, HF Llama 4.41)
written out in one screen: rotate_half RoPE, RMSNorm computed in fp32, grouped-query attention,
SwiGLU, an embedding tied to the output head unless an `lm_head` exists, and immediate block-wise
layer sharing (each stored block run `n_repeat` times in a row). No KV cache: every call recomputes
the whole sequence, which is what training computed and what a per-logical-layer cache must equal.

What it is not: fast, or a training framework. It is also the checkpoint writer for tests
(`save_hf`), producing the HF directory layout that `mobilellm-convert` reads.
"""
import json
import math
import os
import shutil
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    def __init__(self, vocab_size, dim, ffn_dim, n_blocks, n_heads, n_kv_heads, head_dim=None,
                 layer_sharing=False, lm_head=False, norm_eps=1e-5, rope_theta=10000.0,
                 max_pos=2048, bos_id=1, eos_id=2):
        self.vocab_size, self.dim, self.ffn_dim, self.n_blocks = vocab_size, dim, ffn_dim, n_blocks
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = head_dim or dim // n_heads
        self.layer_sharing, self.lm_head = layer_sharing, lm_head
        self.norm_eps, self.rope_theta, self.max_pos = norm_eps, rope_theta, max_pos
        self.bos_id, self.eos_id = bos_id, eos_id

    @property
    def n_repeat(self):
        return 2 if self.layer_sharing else 1

    def hf_json(self):
        """config.json as the HF MobileLLM repos write it (share_embedding, not tie_word_embeddings)."""
        return {
            "architectures": ["MobileLLMForCausalLM"], "model_type": "mobilellm",
            "vocab_size": self.vocab_size, "hidden_size": self.dim, "intermediate_size": self.ffn_dim,
            "num_hidden_layers": self.n_blocks, "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads, "head_dim": self.head_dim,
            "rms_norm_eps": self.norm_eps, "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_pos, "share_embedding": not self.lm_head,
            "tie_word_embeddings": False, "layer_sharing": self.layer_sharing,
            "bos_token_id": self.bos_id, "eos_token_id": self.eos_id, "hidden_act": "silu",
            "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32",
        }


def rms_norm(x, weight, eps):
    # HF LlamaRMSNorm: statistics in fp32, cast back, then scale.
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.dim, c.n_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.n_heads * c.head_dim, c.dim, bias=False)
        self.gate_proj = nn.Linear(c.dim, c.ffn_dim, bias=False)
        self.up_proj = nn.Linear(c.dim, c.ffn_dim, bias=False)
        self.down_proj = nn.Linear(c.ffn_dim, c.dim, bias=False)
        self.input_layernorm = nn.Parameter(torch.ones(c.dim))
        self.post_attention_layernorm = nn.Parameter(torch.ones(c.dim))

    def forward(self, x, cos, sin):
        c = self.c
        B, T, _ = x.shape
        h = rms_norm(x, self.input_layernorm, c.norm_eps)
        q = self.q_proj(h).view(B, T, c.n_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = c.n_heads // c.n_kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(c.head_dim)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf"))
        att = F.softmax(att.float(), dim=-1).to(q.dtype)
        y = (att @ v).transpose(1, 2).reshape(B, T, c.n_heads * c.head_dim)
        x = x + self.o_proj(y)
        h = rms_norm(x, self.post_attention_layernorm, c.norm_eps)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class MobileLLM(nn.Module):
    ffn_prefix = "mlp."

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.dim)
        self.layers = nn.ModuleList(Block(c) for _ in range(c.n_blocks))
        self.norm = nn.Parameter(torch.ones(c.dim))
        self.lm_head = nn.Linear(c.dim, c.vocab_size, bias=False) if c.lm_head else None

    def rope(self, T, dtype):
        c = self.c
        inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2).float() / c.head_dim))
        freqs = torch.outer(torch.arange(T).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, ids):
        """ids: [B, T] int64 -> logits [B, T, vocab] fp32."""
        x = self.embed_tokens(ids)
        cos, sin = self.rope(ids.shape[1], x.dtype)
        for block in self.layers:
            for _ in range(self.c.n_repeat):  # weights shared across repeats
                x = block(x, cos, sin)
        x = rms_norm(x, self.norm, self.c.norm_eps)
        head = self.lm_head.weight if self.lm_head is not None else self.embed_tokens.weight
        return (x @ head.t()).float()

    def hf_state_dict(self):
        """Tensors under the names the HF MobileLLM checkpoints use."""
        sd = {"model.embed_tokens.weight": self.embed_tokens.weight}
        for i, b in enumerate(self.layers):
            p = "model.layers.%d." % i
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                sd[p + "self_attn." + n + ".weight"] = getattr(b, n).weight
            for n in ("gate_proj", "up_proj", "down_proj"):
                sd[p + self.ffn_prefix + n + ".weight"] = getattr(b, n).weight
            sd[p + "input_layernorm.weight"] = b.input_layernorm
            sd[p + "post_attention_layernorm.weight"] = b.post_attention_layernorm
        sd["model.norm.weight"] = self.norm
        if self.lm_head is not None:
            sd["lm_head.weight"] = self.lm_head.weight
        return {k: v.detach().contiguous() for k, v in sd.items()}

    def load_hf_state_dict(self, sd):
        own = self.hf_state_dict()
        with torch.no_grad():
            for k, v in own.items():
                v.copy_(sd[k].float())

    @torch.no_grad()
    def greedy(self, ids, n):
        ids = list(ids)
        for _ in range(n):
            ids.append(int(self(torch.tensor([ids]))[0, -1].argmax()))
        return ids


SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def save_safetensors(tensors, path, metadata=None):
    """Minimal safetensors writer: u64 header length, JSON header, then the raw little-endian data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def save_hf(model, out_dir, tokenizer_path, dtype=torch.float32, fmt="bin", shards=1, drop=()):
    """Write an HF-layout checkpoint directory: config.json, tokenizer.model (if given), weights.

    fmt: "bin" (torch.save zip/pickle) or "safetensors"; shards > 1 writes an *.index.json set.
    drop: tensor names to leave out (to test the converter's missing-tensor error).
    """
    os.makedirs(out_dir, exist_ok=True)
    cfg = model.c.hf_json()
    cfg["torch_dtype"] = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype]
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if tokenizer_path:
        shutil.copyfile(tokenizer_path, os.path.join(out_dir, "tokenizer.model"))
    sd = {k: v.to(dtype) for k, v in model.hf_state_dict().items() if k not in drop}
    names = list(sd)
    ext = "bin" if fmt == "bin" else "safetensors"
    stem = "pytorch_model" if fmt == "bin" else "model"
    parts = [names[i::shards] for i in range(shards)]
    weight_map = {}
    for i, part in enumerate(parts):
        fname = "%s.%s" % (stem, ext) if shards == 1 else "%s-%05d-of-%05d.%s" % (stem, i + 1, shards, ext)
        chunk = {k: sd[k] for k in part}
        if fmt == "bin":
            torch.save(chunk, os.path.join(out_dir, fname))
        else:
            save_safetensors(chunk, os.path.join(out_dir, fname), {"format": "pt"})
        weight_map.update({k: fname for k in part})
    if shards > 1:
        with open(os.path.join(out_dir, "%s.%s.index.json" % (stem, ext)), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)


# ---------------------------------------------------------------------------------------------
# MobileLLM-R1: HF Llama4ForCausalLM (model_type llama4_text), dense layers only.
#
# Written from transformers' modeling_llama4.py (Llama4TextAttention, Llama4TextDecoderLayer,
# Llama4TextModel) and modeling_rope_utils.py (llama3 scaling), in the same one-screen style:
#   - RoPE on adjacent pairs (x[2i], x[2i+1]) viewed as complex numbers, on RoPE layers only;
#   - QK-norm: a weightless RMS norm over head_dim (eps = rms_norm_eps) of q and k AFTER RoPE, on
#     RoPE layers only;
#   - NoPE layers (no_rope_layers[l] == 0) skip both; with attn_temperature_tuning their queries
#     are scaled by log1p(floor((pos + 1) / floor_scale)) * attn_scale + 1;
#   - chunked_attention layers: a query attends only to keys of its own attention_chunk_size
#     chunk (kv // c == q // c), causally; full_attention layers see every earlier key;
#   - the dense FFN is feed_forward.{gate,up,down}_proj of width intermediate_size_mlp.
# ---------------------------------------------------------------------------------------------


class Llama4Config:
    def __init__(self, vocab_size, dim, ffn_dim, n_layers, n_heads, n_kv_heads, head_dim=None, tied=True,
                 norm_eps=1e-5, rope_theta=500000.0, rope_scaling=None, qk_norm=True, no_rope_layers=None,
                 layer_types=None, attention_chunk_size=8192, attn_temperature_tuning=False, attn_scale=0.1,
                 floor_scale=8192, max_pos=4096, bos_id=1, eos_ids=(2,)):
        self.vocab_size, self.dim, self.ffn_dim, self.n_layers = vocab_size, dim, ffn_dim, n_layers
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = head_dim or dim // n_heads
        self.tied, self.lm_head = tied, not tied
        self.norm_eps, self.rope_theta, self.rope_scaling = norm_eps, rope_theta, rope_scaling
        self.qk_norm = qk_norm
        self.no_rope_layers = list(no_rope_layers) if no_rope_layers else [1] * n_layers
        # HF: without layer_types, RoPE layers are chunked and NoPE layers are full.
        self.layer_types_given = layer_types is not None
        self.layer_types = list(layer_types) if layer_types is not None else [
            "chunked_attention" if r else "full_attention" for r in self.no_rope_layers]
        self.attention_chunk_size = attention_chunk_size
        self.attn_temperature_tuning, self.attn_scale, self.floor_scale = attn_temperature_tuning, attn_scale, floor_scale
        self.max_pos, self.bos_id, self.eos_ids = max_pos, bos_id, list(eos_ids)

    def hf_json(self):
        j = {
            "architectures": ["Llama4ForCausalLM"], "model_type": "llama4_text",
            "vocab_size": self.vocab_size, "hidden_size": self.dim,
            "intermediate_size": self.ffn_dim, "intermediate_size_mlp": self.ffn_dim,
            "num_hidden_layers": self.n_layers, "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads, "head_dim": self.head_dim,
            "rms_norm_eps": self.norm_eps, "rope_theta": self.rope_theta, "rope_scaling": self.rope_scaling,
            "use_qk_norm": self.qk_norm, "no_rope_layers": self.no_rope_layers,
            "attention_chunk_size": self.attention_chunk_size,
            "attn_temperature_tuning": self.attn_temperature_tuning, "attn_scale": self.attn_scale,
            "floor_scale": self.floor_scale, "max_position_embeddings": self.max_pos,
            "tie_word_embeddings": self.tied, "bos_token_id": self.bos_id,
            "eos_token_id": self.eos_ids if len(self.eos_ids) > 1 else self.eos_ids[0],
            "moe_layers": [], "num_local_experts": 0, "interleave_moe_layer_step": 0,
            "num_experts_per_tok": 0, "hidden_act": "silu", "attention_bias": False, "torch_dtype": "float32",
        }
        if self.layer_types_given:
            j["layer_types"] = self.layer_types
        return j

    def inv_freq(self):
        """RoPE inverse frequencies as HF computes them: default, or llama3-scaled."""
        hd = self.head_dim
        inv = 1.0 / (self.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        s = self.rope_scaling
        if not s or s.get("rope_type", s.get("type")) == "default":
            return inv
        assert s.get("rope_type", s.get("type")) == "llama3"
        factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        old = s.get("original_max_position_embeddings", self.max_pos)
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        return torch.where(medium, smoothed, scaled)


def l2_norm(x, eps):
    # HF Llama4TextL2Norm: an RMS norm without weight, in fp32, cast back.
    h = x.float()
    return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)


def apply_complex_rope(x, freqs_cis):
    # x [B, T, heads, hd]; freqs_cis [T, hd / 2] complex. Pairs (2i, 2i + 1) rotate together.
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs_cis[None, :, None, :]).flatten(3).type_as(x)


class Llama4Block(Block):
    """The same weights as a MobileLLM block; attention as Llama4TextAttention."""

    def __init__(self, c, layer):
        super().__init__(c)
        self.layer = layer
        self.use_rope = bool(c.no_rope_layers[layer])
        self.chunked = c.layer_types[layer] == "chunked_attention"

    def mask(self, T, device):
        q = torch.arange(T, device=device)[:, None]
        kv = torch.arange(T, device=device)[None, :]
        allowed = kv <= q
        if self.chunked:
            allowed = allowed & (kv // self.c.attention_chunk_size == q // self.c.attention_chunk_size)
        return torch.zeros(T, T).masked_fill(~allowed, float("-inf"))

    def forward(self, x, freqs_cis):
        c = self.c
        B, T, _ = x.shape
        h = rms_norm(x, self.input_layernorm, c.norm_eps)
        q = self.q_proj(h).view(B, T, c.n_heads, c.head_dim)
        k = self.k_proj(h).view(B, T, c.n_kv_heads, c.head_dim)
        v = self.v_proj(h).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        if self.use_rope:
            q, k = apply_complex_rope(q, freqs_cis), apply_complex_rope(k, freqs_cis)
            if c.qk_norm:
                q, k = l2_norm(q, c.norm_eps), l2_norm(k, c.norm_eps)
        elif c.attn_temperature_tuning:
            pos = torch.arange(T).float()
            scales = torch.log1p(torch.floor((pos + 1.0) / c.floor_scale)) * c.attn_scale + 1.0
            q = (q * scales.view(1, T, 1, 1)).to(q.dtype)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        group = c.n_heads // c.n_kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        att = (q @ k.transpose(-1, -2)) * c.head_dim ** -0.5 + self.mask(T, x.device)
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, c.n_heads * c.head_dim)
        x = x + self.o_proj(y)
        h = rms_norm(x, self.post_attention_layernorm, c.norm_eps)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama4Text(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.dim)
        self.layers = nn.ModuleList(Llama4Block(c, l) for l in range(c.n_layers))
        self.norm = nn.Parameter(torch.ones(c.dim))
        self.lm_head = nn.Linear(c.dim, c.vocab_size, bias=False) if c.lm_head else None

    def forward(self, ids):
        """ids: [B, T] int64 -> logits [B, T, vocab] fp32."""
        x = self.embed_tokens(ids)
        T = ids.shape[1]
        freqs = torch.outer(torch.arange(T).float(), self.c.inv_freq())
        freqs_cis = torch.polar(torch.ones_like(freqs), freqs)
        for block in self.layers:
            x = block(x, freqs_cis)
        x = rms_norm(x, self.norm, self.c.norm_eps)
        head = self.lm_head.weight if self.lm_head is not None else self.embed_tokens.weight
        return (x @ head.t()).float()

    ffn_prefix = "feed_forward."  # Llama4TextDecoderLayer.feed_forward, not .mlp
    hf_state_dict = MobileLLM.hf_state_dict
    greedy = MobileLLM.greedy

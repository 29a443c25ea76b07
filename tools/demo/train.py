#!/usr/bin/python3
"""Train the bundled demo model: a tiny MobileLLM (deep, thin, GQA, tied, layer-shared) on Jane Austen.

Steps, all deterministic for a fixed seed and step count:
  1. corpus: the six novels from Debian's r-cran-janeaustenr (see austen.py), split into paragraphs;
     the last 5% of each novel's paragraphs is held out for evaluation;
  2. tokenizer: SentencePiece BPE, 4096 pieces, byte fallback, LLaMA's special ids (unk 0, bos 1, eos 2);
  3. model: tools/mobilellm_torch.py, trained with AdamW on random windows of the token stream;
  4. output (OUT_DIR): an HF-layout checkpoint (config.json, tokenizer.model, fp16 pytorch_model.bin)
     that mobilellm-convert reads like a real MobileLLM, plus heldout.txt and golden.json (greedy ids
     and held-out perplexity computed by PyTorch on exactly the fp16 weights that were saved).

Usage: /usr/bin/python3 tools/demo/train.py OUT_DIR [--steps N] [--threads N]
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

# OpenBLAS (install libopenblas0-pthread: Debian's default reference BLAS is ~30x slower) sizes its
# own thread pool; pin it to --threads before torch loads it.
_threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
os.environ.setdefault("OPENBLAS_NUM_THREADS", _threads)

import torch  # noqa: E402
import sentencepiece as spm  # noqa: E402

import austen  # noqa: E402
from mobilellm_torch import Config, MobileLLM, save_hf  # noqa: E402

PROMPT = "It is a truth universally acknowledged, that"


def corpus():
    """Returns (train_paragraphs, heldout_paragraphs) lists, per novel in a fixed order."""
    root = "/"
    if not os.path.exists("/usr/lib/R/site-library/janeaustenr/data/Rdata.rdx"):
        root = tempfile.mkdtemp()
        subprocess.run(["apt-get", "download", "r-cran-janeaustenr"], cwd=root, check=True)
        deb = [f for f in os.listdir(root) if f.endswith(".deb")][0]
        subprocess.run(["dpkg-deb", "-x", deb, root], cwd=root, check=True)
    train, held = [], []
    for name, lines in austen.load(root).items():
        paras, cur = [], []
        for line in lines + [""]:
            line = (line or "").strip()
            if line:
                cur.append(line)
            elif cur:
                paras.append(" ".join(cur))
                cur = []
        cut = int(len(paras) * 0.95)
        train.append(paras[:cut])
        held.append(paras[cut:])
    return train, held


def train_tokenizer(train, prefix):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for book in train:
            for p in book:
                f.write(p + "\n")
    spm.SentencePieceTrainer.train(
        input=f.name, model_prefix=prefix, model_type="bpe", vocab_size=4096,
        byte_fallback=True, split_digits=True, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        user_defined_symbols=["\n"], unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        max_sentence_length=16384, num_threads=1, minloglevel=2)
    os.unlink(f.name)
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def perplexity(model, ids, ctx, bos):
    """The protocol `mobilellm perplexity` implements: windows of ctx-1 tokens, each evaluated as
    [BOS] + window, every window token scored. Returns (mean NLL, token count)."""
    nll, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids), ctx - 1):
            w = ids[s:s + ctx - 1]
            x = torch.tensor([[bos] + w])
            logp = torch.log_softmax(model(x)[0, :-1].double(), dim=-1)
            nll -= float(logp[torch.arange(len(w)), torch.tensor(w)].sum())
            n += len(w)
    return nll / n, n


def main():
    ap = argparse.ArgumentParser(description="train the demo model")
    ap.add_argument("out_dir")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out_dir, exist_ok=True)
    t0 = time.time()

    train, held = corpus()
    sp = train_tokenizer(train, os.path.join(a.out_dir, "tokenizer"))
    stream = []
    for book in train:
        stream += [1] + sp.encode("\n".join(book))
    held_text = "\n".join("\n".join(book) for book in held) + "\n"
    with open(os.path.join(a.out_dir, "heldout.txt"), "w") as f:
        f.write(held_text)
    print("corpus: %d train tokens, %d held-out chars" % (len(stream), len(held_text)), flush=True)

    c = Config(vocab_size=sp.get_piece_size(), dim=128, ffn_dim=352, n_blocks=8, n_heads=4,
               n_kv_heads=2, layer_sharing=True, max_pos=512)
    model = MobileLLM(c)
    for name, p in model.named_parameters():
        if p.dim() == 2:
            std = 0.02 / math.sqrt(2 * c.n_blocks * c.n_repeat) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
            torch.nn.init.normal_(p, 0.0, std)
    n_params = sum(p.numel() for p in model.parameters())
    print("model: %d parameters" % n_params, flush=True)

    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    data = torch.tensor(stream)
    warmup = max(1, a.steps // 20)
    for step in range(a.steps):
        lr = a.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / a.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(stream) - a.seq - 1, (a.batch,))
        x = torch.stack([data[s:s + a.seq] for s in starts])
        y = torch.stack([data[s + 1:s + a.seq + 1] for s in starts])
        loss = torch.nn.functional.cross_entropy(model(x).view(-1, c.vocab_size), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == a.steps - 1:
            print("step %5d  loss %.4f  lr %.2e  %.0fs" % (step, loss.item(), lr, time.time() - t0), flush=True)
    train_s = time.time() - t0

    # Ship fp16: round the weights once, so every golden below is what the fp16 file computes.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    model.eval()
    save_hf(model, os.path.join(a.out_dir, "hf"), os.path.join(a.out_dir, "tokenizer.model"), dtype=torch.float16)
    held_ids = sp.encode(held_text)
    nll, n = perplexity(model, held_ids, 256, 1)
    prompt_ids = [1] + sp.encode(PROMPT)
    greedy = model.greedy(prompt_ids, 48)
    golden = {
        "prompt": PROMPT, "prompt_ids": prompt_ids, "greedy_ids": greedy[len(prompt_ids):],
        "greedy_text": sp.decode(greedy[len(prompt_ids):]),
        "heldout_ctx": 256, "heldout_tokens": n, "heldout_nll": nll, "heldout_ppl": math.exp(nll),
        "steps": a.steps, "batch": a.batch, "seq": a.seq, "seed": a.seed, "threads": a.threads,
        "train_tokens_seen": a.steps * a.batch * a.seq, "train_stream_tokens": len(stream),
        "train_seconds": round(train_s), "parameters": n_params, "torch": torch.__version__,
    }
    with open(os.path.join(a.out_dir, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
    print(json.dumps({k: v for k, v in golden.items() if "ids" not in k}, indent=1))


if __name__ == "__main__":
    main()

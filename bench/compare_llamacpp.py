#!/usr/bin/python3
"""mobilellm.cpp vs llama.cpp on the exact MobileLLM-125M shape, side by side, in one run.

    /usr/bin/python3 bench/compare_llamacpp.py [--peers ../shared/peers] [--work /tmp/mobilellm-vs-llamacpp]
                                                [--threads 1,2] [--dtypes f16,q8_0,q4_0] [--reps 3] [--rounds 3]

llama.cpp runs through the shared peer scripts (`shared/peers/`: node-llama-cpp 3.21.1 and its
prebuilt CPU backend, on a random 125M-shaped GGUF written by make_gguf.py); they are copied to
--work first, because shared/ is read-only. Our side runs `mobilellm bench` on random weights of
the same shape (`mobilellm-convert --random 125m`). Same protocol on both: a 128-token prompt,
then 128 greedy decode steps, one warm-up and --reps timed repetitions per process, medians.

The host is shared and its speed drifts by tens of percent within minutes, so each row is measured
in --rounds rounds, each round one llama.cpp process, then ours with the read bandwidth measured
just before and just after (the bound takes the higher of the two). Every ratio and percentage is
computed within a round and the table gives the median over rounds, with each round's value.
Writes bench/llamacpp-comparison.md and prints it.
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


def read_bandwidth(build, mib, threads):
    """Median read GB/s of `build/bench/bandwidth` over a buffer of `mib` MiB with `threads` threads: 5 repetitions
    of the best of its three read patterns, each sustained for 200 ms (about as long as one decode repetition)."""
    out = subprocess.run([os.path.join(build, "bench", "bandwidth"), "--mib", str(mib), "--threads", str(threads),
                          "--reps", "5", "--min-ms", "200"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["median_GBps"]


def per_round(values, fmt):
    """'m (a, b, c)': the median and each round's value."""
    return "%s (%s)" % (fmt % statistics.median(values), ", ".join(fmt % v for v in values))


def label(weights, isa):
    """A row's name: the weight type, marked when the AVX2 table was forced."""
    return weights + (" (avx2)" if isa == "avx2" else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", default=os.path.join(ROOT, "..", "shared", "peers"))
    ap.add_argument("--work", default="/tmp/mobilellm-vs-llamacpp")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--dtypes", default="f16,q8_0,q4_0")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
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
    for d in dtypes:
        if not os.path.exists(os.path.join(peers, "models", "mobilellm-125m-%s.gguf" % d)):
            subprocess.run(["/usr/bin/python3", "make_gguf.py", "--out", "models", "--types", d], cwd=peers, check=True)
    tok = extract_tokenizer(os.path.join(ROOT, "models", "demo-austen.mlm"), os.path.join(a.work, "tokenizer.model"))
    ours = {}
    for d in dtypes:
        path = os.path.join(a.work, "125m-%s.mlm" % d)
        # Always rewritten (seconds): a file from an older converter may hold an older layout.
        subprocess.run([os.path.join(a.build, "mobilellm-convert"), "--random", "125m", "--dtype", d, "--tokenizer", tok,
                        "-o", path, "-q", "--force"], check=True)
        ours[d] = path

    # rows[(weights, threads, isa)] = list of rounds, each {"llama.cpp": ..., "mobilellm": ...}
    rows = {}
    for d in dtypes:
        for t in threads:
            isas = ["best"] + (["avx2"] if d in ("q8_0", "q4_0") else [])  # avx2: the AVX2 table forced (no VNNI)
            weight_mib = os.path.getsize(ours[d]) / 1048576.0  # the working set: the weights, ~all of the file
            for k in range(a.rounds):
                print("round %d/%d: llama.cpp %s %dT ..." % (k + 1, a.rounds, d, t), file=sys.stderr)
                out = subprocess.run(["node", "bench_llamacpp.mjs", "--model", "models/mobilellm-125m-%s.gguf" % d,
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
    lines = ["# mobilellm.cpp vs llama.cpp: random MobileLLM-125M, same machine, same run", "",
             "Generated by `bench/compare_llamacpp.py --reps %d --rounds %d` on %s, %s (%s). llama.cpp: node-llama-cpp 3.21.1, "
             "prebuilt CPU backend `%s`. Ours: kernels `%s`. 128-token prompt, then 128 greedy decode steps; each process "
             "gives the medians of %d repetitions after a warm-up. Load: llama.cpp `loadModel + createContext`, ours "
             "`Model::Load + Session::Create`, both with a warm page cache. Peak RSS: the whole process (node's runtime is "
             "~86 MiB of llama.cpp's)." % (a.reps, a.rounds, datetime.date.today().isoformat(), cpu_name(), os.uname().machine,
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
             "", "Rows marked (avx2) rerun ours with `MOBILELLM_ISA=avx2` (no VNNI) against the same llama.cpp runs.", "",
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
    with open(os.path.join(HERE, "llamacpp-comparison.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(HERE, "llamacpp-comparison.json"), "w") as f:
        for (d, t, isa), rounds in rows.items():
            for k, r in enumerate(rounds):
                f.write(json.dumps({"weights": label(d, isa), "threads": t, "round": k + 1,
                                    "llama.cpp": r["llama.cpp"], "mobilellm": r["mobilellm"]}) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

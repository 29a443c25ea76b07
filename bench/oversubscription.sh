#!/usr/bin/env bash
# More threads than CPUs must not cost speed: `mobilellm bench` decodes with -t 64 and with -t
# (the CPUs this process may use), alternating, and prints both figures. The -t 64 rows must reach
# 90% of the others' decode tok/s (the fastest repetition of each, so a passing load spike on a
# shared machine does not decide). Before the CLI clamped the count and the pool stopped spinning when oversubscribed,
# -t 256 on two cores decoded at 0.1 tok/s.
#   bench/oversubscription.sh MODEL [--no-gate] COMMAND...   (COMMAND runs mobilellm, e.g. an
#                                                            emulator and the binary)
# --no-gate prints the figures without judging them (under an emulator they mean nothing).
set -euo pipefail
model=$1
shift
gate=1
if [[ "${1:-}" == "--no-gate" ]]; then
  gate=0
  shift
fi
cpus=$(nproc)
out=$("$@" bench -m "$model" -p 16 -n 64 -r 5 -t "$cpus,64,$cpus,64,$cpus,64" --output json)
python3 - "$cpus" "$gate" "$out" <<'PY'
import json, sys
cpus, gate = int(sys.argv[1]), sys.argv[2] == "1"
rows = [json.loads(l) for l in sys.argv[3].splitlines() if l.strip()]
best = {}
for r in rows:
    asked, tps = r["threads_asked"], r["decode_tok_s"]["max"]
    print(f"-t {asked}: {r['threads']} threads used, decode {tps:.1f} tok/s (fastest of 5, "
          f"median {r['decode_tok_s']['median']:.1f})")
    best[asked] = max(best.get(asked, 0.0), tps)
ratio = best[64] / best[cpus]
print(f"-t 64 decodes at {100 * ratio:.1f}% of -t {cpus} (fastest of each; needs >= 90%)")
sys.exit(1 if gate and ratio < 0.9 else 0)
PY

#!/usr/bin/env node
// llama.cpp's greedy token ids on a GGUF, through node-llama-cpp (the copy of shared/peers that
// bench/compare_llamacpp.py makes), for bench/r1_gguf.py's checks.
//
//   node bench/llamacpp_greedy.mjs --peers WORK/peers --model X.gguf --ids 128000,300,...[;128000,...] --n 24,1 [--threads 1]
//
// For each prompt (';'-separated; each from an empty context) its --n greedy ids (the n list in
// the same order; the last n applies to the prompts beyond it). Prints one JSON line:
// {"tokens": [[ids of prompt 1], ...], "eog": [ids among them llama.cpp treats as end of
// generation]}. End-of-generation ids are yielded, not stopped at, so the caller sees them.
import {createRequire} from "node:module";
import {pathToFileURL} from "node:url";
import path from "node:path";

const arg = (n, d) => { const i = process.argv.indexOf("--" + n); return i >= 0 ? process.argv[i + 1] : d; };
const peers = path.resolve(arg("peers", "."));
const req = createRequire(path.join(peers, "llamacpp", "package.json"));
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(req.resolve("node-llama-cpp")).href);
const modelPath = path.resolve(arg("model", ""));
const prompts = arg("ids", "").split(";").map((p) => p.split(",").map((s) => parseInt(s)));
const ns = arg("n", "24").split(",").map((s) => parseInt(s)), threads = parseInt(arg("threads", "1"));

const llama = await getLlama({gpu: false, build: "never", maxThreads: threads, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const ctx = await model.createContext({contextSize: 512, threads});
const seq = ctx.getSequence();
const tokens = [];
for (const [i, ids] of prompts.entries()) {
    const n = ns[Math.min(i, ns.length - 1)], out = [];
    await seq.clearHistory();
    for await (const tok of seq.evaluate(ids, {temperature: 0, yieldEogToken: true})) {
        out.push(tok);
        if (out.length >= n) break;
    }
    tokens.push(out);
}
console.log(JSON.stringify({tokens, eog: tokens.flat().filter((t) => model.isEogToken(t))}));
await ctx.dispose(); await model.dispose(); await llama.dispose();

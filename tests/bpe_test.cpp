// Byte-level BPE (tokenizer.json): parity with HF's Tokenizers.js, the converter's refusals, the
// blob reader's checks, and the CLI on a byte-level BPE model.
//
// The oracle cases come from tests/bpe/oracle.mjs, run by the ctest fixture "bpe_oracle" (npm
// installs Tokenizers.js and the Llama-3 tokenizer.json into the build tree); without npm those
// tests skip, saying so. Nothing here needs PyTorch.
#include <chrono>
#include <cstring>

#include "mobilellm/mobilellm.h"
#include "test_util.h"
#include "tokenizer_json.h"

namespace mobilellm {
namespace {

using nlohmann::json;
using testing::TempDir;

std::string OracleDir() {
  return MOBILELLM_BPE_ORACLE_DIR;
}

Tokenizer Convert(const std::string& tokenizer_json) {
  auto blob = convert::TokenizerJsonToBlob(tokenizer_json, "tokenizer.json");
  EXPECT_TRUE(blob.ok()) << blob.status().message();
  auto t = Tokenizer::Parse(format::TokenizerKind::kByteLevelBpe, blob.ok() ? *blob : "");
  if (!t.ok()) {
    ADD_FAILURE() << t.status().message() << " from " << tokenizer_json.substr(0, 300);
    std::abort();
  }
  return *t;
}

std::string Show(const std::string& s) {
  return json(s.substr(0, 200)).dump();
}
std::string Show(const std::vector<int>& ids) {
  return json(std::vector<int>(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 40))).dump();
}

// Every case of one variant: ids, decode and streamed bytes equal to the oracle's.
void CheckOracle(const std::string& name) {
  const std::string tok_path = OracleDir() + "/" + name + ".tokenizer.json";
  const std::string cases_path = OracleDir() + "/" + name + ".cases.json";
  if (!testing::FileExists(cases_path))
    GTEST_SKIP() << cases_path << " is absent: the bpe_oracle fixture did not run (no npm?)";
  const Tokenizer tok = Convert(testing::ReadAll(tok_path));
  const json oracle = testing::ReadJson(cases_path);
  int n_cases = 0, failures = 0;
  int64_t n_ids = 0;
  std::map<std::string, int> by_kind;
  for (const json& c : oracle["cases"]) {
    const std::string text = c["text"], want_text = c["decoded"];
    const std::vector<int> want = c["ids"];
    const std::vector<int> got = tok.Encode(text);
    const std::string decoded = tok.Decode(want);
    std::string streamed;
    for (int id : want) streamed += tok.PieceBytes(id);
    const bool ok = got == want && decoded == want_text && streamed == want_text;
    if (!ok && ++failures <= 10)
      ADD_FAILURE() << name << " " << c["kind"] << " case " << Show(text) << ":\n  oracle "
                    << Show(want) << "\n  ours   " << Show(got) << "\n  decode equal "
                    << (decoded == want_text) << ", stream equal " << (streamed == want_text);
    ++n_cases, n_ids += int64_t(want.size()), ++by_kind[c["kind"]];
  }
  int n_decodes = 0;
  for (const json& d : oracle["decodes"]) {
    const std::vector<int> ids = d["ids"];
    const std::string want = d["decoded"];
    if (tok.Decode(ids) != want && ++failures <= 10)
      ADD_FAILURE() << name << " decode of " << Show(ids) << ": oracle " << Show(want) << ", ours "
                    << Show(tok.Decode(ids));
    ++n_decodes;
  }
  EXPECT_EQ(failures, 0);
  EXPECT_GT(by_kind["corpus"], 150);
  EXPECT_GT(by_kind["random"], 1000);
  std::printf(
      "%s: %d cases (%d corpus, %d long, %d random), %lld ids, %d decodes compared with "
      "Tokenizers.js %s (Unicode %s): %d differ\n",
      name.c_str(), n_cases, by_kind["corpus"], by_kind["long"], by_kind["random"],
      (long long)n_ids, n_decodes, oracle["tokenizers_js"].get<std::string>().c_str(),
      oracle["unicode"].get<std::string>().c_str(), failures);

  // Encode speed on the long natural text (a figure for the report, not a check).
  const std::string text =
      testing::ReadAll(std::string(MOBILELLM_SOURCE_DIR) + "/models/demo-heldout.txt");
  std::vector<double> secs;
  for (int k = 0; k < 5; ++k) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok.Encode(text);
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(secs.begin(), secs.end());
  std::printf("%s: encodes demo-heldout.txt (%zu bytes) at %.1f MB/s; Tokenizers.js %.2f MB/s\n",
              name.c_str(), text.size(), text.size() / 1e6 / secs[2],
              oracle["oracle_mb_per_s"].get<double>());
}

TEST(BpeOracle, Llama3MatchesTokenizersJs) {
  CheckOracle("llama3");
}
TEST(BpeOracle, Gpt2SplitMatchesTokenizersJs) {
  CheckOracle("gpt2_split");
}
TEST(BpeOracle, Gpt2ByteLevelMatchesTokenizersJs) {
  CheckOracle("gpt2_bytelevel");
}

// ---- a small tokenizer.json, made here ---------------------------------------------------------

// GPT-2's byte-to-unicode alphabet, for writing vocabulary strings.
std::string ByteChar(int b) {
  static const auto table = [] {
    std::vector<int> cp(256);
    int next = 256;
    for (int x = 0; x < 256; ++x) {
      const bool printable = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174;
      cp[x] = printable ? x : next++;
    }
    return cp;
  }();
  const int c = table[b];
  std::string s;
  if (c < 0x80) {
    s += char(c);
  } else {
    s += char(0xC0 | (c >> 6)), s += char(0x80 | (c & 0x3F));
  }
  return s;
}

// 256 byte tokens, "ab", "abc", " a" ("Ġa"), then added tokens <|x|> (special) and <tool>.
json SmallTokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteChar(b)] = b;
  vocab["ab"] = 256, vocab["abc"] = 257, vocab[ByteChar(' ') + "a"] = 258;
  json added = json::array();
  added.push_back({{"id", 259},
                   {"content", "<|x|>"},
                   {"special", true},
                   {"single_word", false},
                   {"lstrip", false},
                   {"rstrip", false},
                   {"normalized", false}});
  added.push_back({{"id", 260}, {"content", "<tool>"}, {"special", false}, {"normalized", true}});
  json split = {{"type", "Split"}, {"behavior", "Isolated"}, {"invert", false}};
  split["pattern"]["Regex"] =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  json byte_level = {{"type", "ByteLevel"},
                     {"add_prefix_space", false},
                     {"trim_offsets", true},
                     {"use_regex", false}};
  json j = json::object();
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"]["type"] = "Sequence";
  j["pre_tokenizer"]["pretokenizers"] = json::array({split, byte_level});
  j["post_processor"] = nullptr;
  j["decoder"]["type"] = "ByteLevel";
  json& m = j["model"];
  m["type"] = "BPE";
  m["dropout"] = nullptr;
  m["unk_token"] = nullptr;
  m["ignore_merges"] = true;
  m["vocab"] = vocab;
  m["merges"] = json::array({"a b", json::array({"ab", "c"}), ByteChar(' ') + " a"});
  return j;
}

TEST(Bpe, SmallTokenizerEncodesAndDecodes) {
  const Tokenizer t = Convert(SmallTokenizer().dump());
  EXPECT_EQ(t.kind(), format::TokenizerKind::kByteLevelBpe);
  EXPECT_EQ(t.size(), 261);
  EXPECT_EQ(t.Encode("abc"), (std::vector<int>{257}));
  EXPECT_EQ(t.Encode("abcab a"), (std::vector<int>{257, 256, 258}));
  EXPECT_EQ(t.Encode("x<|x|>ab<tool>"), (std::vector<int>{'x', 259, 256, 260}));
  EXPECT_EQ(t.TokenId("<|x|>"), 259);
  EXPECT_EQ(t.TokenId("abc"), 257);
  EXPECT_EQ(t.TokenId("zz"), -1);
  EXPECT_TRUE(t.IsSpecial(259));
  EXPECT_FALSE(t.IsSpecial(260));
  EXPECT_FALSE(t.IsSpecial(257));
  EXPECT_FALSE(t.IsSpecial(-1));
  EXPECT_EQ(t.Decode({257, 259, 258, 260, 999, -3}), "abc<|x|> a<tool>");
  // Bytes that are not UTF-8 survive encoding and decode as U+FFFD, one per maximal subpart.
  EXPECT_EQ(t.Encode("\xff\xe2\x82"), (std::vector<int>{0xff, 0xe2, 0x82}));
  EXPECT_EQ(t.Decode({0xe2, 0x82, 'a', 0xff}),
            "\xEF\xBF\xBD"
            "a"
            "\xEF\xBF\xBD");
  EXPECT_EQ(t.PieceBytes(0xe2), "\xe2");
  EXPECT_EQ(t.PieceBytes(261), "");
  // A long word merges in O(n log n): 200k bytes encode at once.
  std::string word;
  for (int i = 0; i < 100000; ++i) word += "ab";
  EXPECT_EQ(t.Encode(word), std::vector<int>(100000, 256));
}

TEST(Bpe, ConverterRefusesWhatItCannotDo) {
  const auto refuse = [](json j, const std::string& why) {
    const auto r = convert::TokenizerJsonToBlob(j.dump(), "tok.json");
    ASSERT_FALSE(r.ok()) << why;
    EXPECT_NE(r.status().message().find("tok.json: "), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(why), std::string::npos) << r.status().message();
  };
  json j = SmallTokenizer();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+|[^\\w\\s]+";
  refuse(j, "unknown Split pattern '\\x5cw+|[^\\x5cw\\x5cs]+'");  // quoted as Printable
  j = SmallTokenizer(), j["normalizer"] = {{"type", "NFC"}};
  refuse(j, "normalizer 'NFC'");
  j = SmallTokenizer(), j["model"]["type"] = "WordPiece";
  refuse(j, "model type 'WordPiece'");
  j = SmallTokenizer(), j["model"]["byte_fallback"] = true;
  refuse(j, "model.byte_fallback = true");
  j = SmallTokenizer(), j["model"]["dropout"] = 0.1;
  refuse(j, "model.dropout");
  j = SmallTokenizer(), j["model"]["frobnicate"] = 1;
  refuse(j, "unknown option 'frobnicate'");
  j = SmallTokenizer(), j["added_tokens"][0]["lstrip"] = true;
  refuse(j, "lstrip = true");
  j = SmallTokenizer(), j["added_tokens"][0]["single_word"] = true;
  refuse(j, "single_word = true");
  j = SmallTokenizer(), j["added_tokens"][0]["lstrip"] = "yes";
  refuse(j, "expected true or false");
  j = SmallTokenizer(), j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true;
  refuse(j, "add_prefix_space");
  j = SmallTokenizer(), j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  refuse(j, "Split behavior 'Removed'");
  j = SmallTokenizer(), j["pre_tokenizer"] = {{"type", "Whitespace"}};
  refuse(j, "type 'Whitespace'");
  j = SmallTokenizer(), j["decoder"] = {{"type", "Metaspace"}};
  refuse(j, "decoder: expected ByteLevel");
  j = SmallTokenizer(), j["truncation"] = {{"max_length", 8}};
  refuse(j, "truncation");
  j = SmallTokenizer(), j["model"]["merges"].push_back("x yz");
  refuse(j, "'yz' is not in model.vocab");
  j = SmallTokenizer(), j["model"]["merges"].push_back(7);
  refuse(j, "expected \"a b\"");
  j = SmallTokenizer(), j["model"]["vocab"]["z€"] = 261;
  refuse(j, "not a byte-level token");
  j = SmallTokenizer(), j["model"]["vocab"]["zz"] = 300;
  refuse(j, "id 261 is neither");
  j = SmallTokenizer(), j["model"]["vocab"]["zz"] = 257;
  refuse(j, "is used twice");
  j = SmallTokenizer(), j["model"]["vocab"] = "no";
  refuse(j, "model.vocab: expected an object");
  j = SmallTokenizer(), j["added_tokens"][1]["id"] = 259;
  refuse(j, "added twice");
  j = SmallTokenizer(), j["added_tokens"][1]["content"] = std::string(300, 'x');
  refuse(j, "content must have 1..256 bytes");
  // Found by fuzz_tokenizer_json: a vocabulary with no token for one single byte gave a blob the
  // engine refuses; the converter now refuses it itself, in the engine's words.
  j = SmallTokenizer(), j["model"]["vocab"].erase(ByteChar('~')), j["model"]["vocab"]["?~"] = 126;
  refuse(j, "no vocabulary token for the single byte 126");
  refuse(json::array(), "not a tokenizer.json");
  const auto r = convert::TokenizerJsonToBlob("{\"model\": [1, 2", "tok.json");
  EXPECT_FALSE(r.ok());
}

TEST(Bpe, BlobReaderRefusesCorruption) {
  auto good = convert::TokenizerJsonToBlob(SmallTokenizer().dump(), "t");
  ASSERT_TRUE(good.ok()) << good.status().message();
  const std::string blob = *good;
  const auto parse = [](const std::string& b) {
    return Tokenizer::Parse(format::TokenizerKind::kByteLevelBpe, b);
  };
  ASSERT_TRUE(parse(blob).ok());
  for (size_t cut = 0; cut < blob.size(); cut += 7) EXPECT_FALSE(parse(blob.substr(0, cut)).ok());
  EXPECT_FALSE(parse(blob + "x").ok());
  const auto patched = [&](size_t at, uint32_t v) {
    std::string b = blob;
    std::memcpy(&b[at], &v, 4);
    return parse(b);
  };
  const auto expect = [](const Result<Tokenizer>& r, const std::string& why) {
    ASSERT_FALSE(r.ok()) << why;
    EXPECT_NE(r.status().message().find(why), std::string::npos) << r.status().message();
  };
  const uint32_t n_tokens = 261, n_merges = 3;
  const size_t ends = 32, merges = ends + 4 * n_tokens, added = merges + 12 * n_merges;
  expect(patched(0, 0x46554747), "bad magic");
  expect(patched(4, 2), "version 2");
  expect(patched(8, 9), "unknown pre-tokenizer 9");
  expect(patched(12, 6), "unknown flags 6");
  expect(patched(16, 0xFFFFFFFF), "implausible sizes");
  expect(patched(20, 4), "size: the header's counts (261 tokens, 4 merges");
  expect(patched(ends + 4 * 10, 0), "token 10 is empty");
  expect(patched(ends + 4 * 10, 0x7FFFFFFF), "token 10 is empty or ends outside");
  expect(patched(merges + 8, 257), "merge 0: token 257 is not tokens");
  expect(patched(merges + 12, 'a'), "merge 1: token 257 is not tokens");
  expect(patched(merges + 12 * 2, 259), "merge 2: id 259 is not a vocabulary token");
  expect(patched(merges + 12 * 2 + 8, 9999), "merge 2: id 9999");
  expect(patched(added, 9999), "added token #0: id 9999 out of range");
  expect(patched(added + 8, 259), "added token #1: id 259 is added twice");
  expect(patched(added + 4, 2), "added token #0: unknown flags 2");
  expect(patched(added, 'a'), "no vocabulary token for the single byte 97");
  {  // a duplicate merge pair
    std::string b = blob;
    std::memcpy(&b[merges + 12 * 2], &b[merges], 12);
    expect(parse(b), "merge 2: the pair (97, 98) is already merge 0");
  }
}

// ---- the model file and the CLI ---------------------------------------------------------------

std::string ModelWithBpe(const TempDir& dir, const std::string& blob, int vocab, int bos) {
  testing::WriteTokenizerModel(dir / "bpe.mlm", blob, format::TokenizerKind::kByteLevelBpe, vocab,
                               bos);
  return dir / "bpe.mlm";
}

TEST(Bpe, ModelTokenizeAndCli) {
  TempDir dir;
  auto blob = convert::TokenizerJsonToBlob(SmallTokenizer().dump(), "t");
  ASSERT_TRUE(blob.ok());
  const std::string path = ModelWithBpe(dir, *blob, 261, 259);
  auto model = Model::Load(path);
  ASSERT_TRUE(model.ok()) << model.status().message();
  EXPECT_EQ((*model)->Tokenize("abc a"), (std::vector<int>{259, 257, 258}));
  EXPECT_EQ((*model)->Tokenize("abc a", false), (std::vector<int>{257, 258}));
  EXPECT_EQ((*model)->Detokenize({259, 257, 258}), "<|x|>abc a");
  EXPECT_EQ((*model)->tokenizer().kind(), format::TokenizerKind::kByteLevelBpe);

  const auto t = testing::RunCommand(testing::Mobilellm() + " tokenize -m " + path + " -p 'abc a'");
  EXPECT_EQ(t.exit_code, 0) << t.err;
  EXPECT_EQ(t.out, "259 257 258\n");
  const auto p =
      testing::RunCommand(testing::Mobilellm() + " tokenize -m " + path + " --pieces -p 'abc a'");
  EXPECT_EQ(p.exit_code, 0) << p.err;
  EXPECT_NE(p.out.find("   258  ' a'"), std::string::npos) << p.out;
  const auto i = testing::RunCommand(testing::Mobilellm() + " info " + path);
  EXPECT_EQ(i.exit_code, 0) << i.err;
  EXPECT_NE(i.out.find("tokenizer:   byte-level BPE (Llama-3 pre-tokenizer), 261 tokens, 2 added "
                       "(1 special)"),
            std::string::npos)
      << i.out;

  // A tokenizer bigger than the model's vocabulary, and a corrupt blob, are load errors.
  const std::string small = ModelWithBpe(dir, *blob, 260, 0);
  auto r = Model::Load(small);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("more than the model's vocab_size 260"), std::string::npos);
  std::string bad = *blob;
  bad[40] = '\x7f';
  const std::string corrupt = ModelWithBpe(dir, bad, 261, 0);
  const auto e = testing::RunCommand(testing::Mobilellm() + " tokenize -m " + corrupt + " -p x");
  EXPECT_EQ(e.exit_code, 1);
  EXPECT_EQ(e.out, "");
  EXPECT_NE(e.err.find(corrupt + ": tensor 'tokenizer': byte-level BPE tokenizer: "),
            std::string::npos)
      << e.err;
}

TEST(Bpe, ConvertRandomWithTokenizerJson) {
  // --tokenizer accepts a tokenizer.json: the .mlm then holds the blob, kind 2.
  TempDir dir;
  json j = SmallTokenizer();
  // 32000 tokens, so the 125m preset's vocabulary holds them.
  for (int id = 261; id < 32000; ++id) j["model"]["vocab"]["t" + std::to_string(id)] = id;
  testing::WriteAll(dir / "tokenizer.json", j.dump());
  const auto c =
      testing::RunCommand(testing::Convert() + " --random 125m --dtype f16 --tokenizer " +
                          (dir / "tokenizer.json") + " -o " + (dir / "m.mlm") + " -q");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  auto model = Model::Load(dir / "m.mlm");
  ASSERT_TRUE(model.ok()) << model.status().message();
  EXPECT_EQ((*model)->config().tokenizer_kind, format::TokenizerKind::kByteLevelBpe);
  EXPECT_EQ((*model)->Tokenize("abc", false), (std::vector<int>{257}));
  j["normalizer"] = {{"type", "Lowercase"}};
  testing::WriteAll(dir / "bad.json", j.dump());
  const auto b = testing::RunCommand(testing::Convert() + " --random 125m --tokenizer " +
                                     (dir / "bad.json") + " -o " + (dir / "b.mlm") + " -q");
  EXPECT_EQ(b.exit_code, 1);
  EXPECT_NE(b.err.find(dir / "bad.json" + ": normalizer 'Lowercase' is not supported"),
            std::string::npos)
      << b.err;
  EXPECT_FALSE(testing::FileExists(dir / "b.mlm"));
}

}  // namespace
}  // namespace mobilellm

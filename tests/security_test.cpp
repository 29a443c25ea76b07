// Hostile model files and checkpoints (issue 20): one test per row of the issue's table. Each test
// makes its crafted input here (the logic of ../shared/security/gen_*.py, in C++), runs the tool
// in a child process and asserts: exit code 1 and no signal, exactly one error line that names the
// file, nothing on stdout, no temporary or output file left, and bounded time and memory (the
// child's peak RSS, from wait4). The bounds are guards against the quadratic or unbounded
// behaviour each row had, set ~10x above what the fixed code needs; they are not speed targets.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <set>

#include "mobilellm/model_file.h"
#include "mobilellm/tokenizer.h"
#include "pickle.h"
#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define MOBILELLM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOBILELLM_ASAN 1
#endif
#endif

namespace mobilellm {
namespace {

using testing::TempDir;
using testing::WriteAll;

// ---- running a child -----------------------------------------------------------------------

struct Child {
  int exit_code = -1, signal = 0;
  std::string out, err;
  double seconds = 0;
  long max_rss_mb = 0;
};

// Runs `sh -c script` with stdin from /dev/null; stdout and stderr captured. The script should
// `exec` the tool, so that the peak RSS wait4 reports is the tool's own.
Child RunChild(const std::string& script) {
  TempDir tmp;
  const std::string out = tmp / "out", err = tmp / "err";
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int in = ::open("/dev/null", O_RDONLY);
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(in, 0), ::dup2(o, 1), ::dup2(e, 2);
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  Child c;
  int status = 0;
  struct rusage ru;
  std::memset(&ru, 0, sizeof(ru));
  ::wait4(pid, &status, 0, &ru);
  c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  c.max_rss_mb = ru.ru_maxrss / 1024;  // KiB on Linux
  if (WIFEXITED(status)) c.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) c.signal = WTERMSIG(status);
  c.out = testing::ReadAll(out);
  c.err = testing::ReadAll(err);
  return c;
}

// Exit 1, no signal, nothing on stdout, exactly one line on stderr from `tool` naming `file`.
void ExpectOneErrorLine(const Child& c, const std::string& tool, const std::string& file) {
  EXPECT_EQ(c.signal, 0) << c.err;
  EXPECT_EQ(c.exit_code, 1) << c.err;
  EXPECT_EQ(c.out, "");
  EXPECT_EQ(std::count(c.err.begin(), c.err.end(), '\n'), 1) << c.err.substr(0, 1000);
  EXPECT_EQ(c.err.rfind(tool + ": error: ", 0), 0u) << c.err.substr(0, 1000);
  EXPECT_NE(c.err.find(file), std::string::npos) << "the message names " << file << ": " << c.err;
  std::printf("  [%s] exit %d, %.2f s, peak RSS %ld MB: %s", tool.c_str(), c.exit_code, c.seconds,
              c.max_rss_mb, c.err.substr(0, 300).c_str());
}

// The names in `dir` (recursively), to show nothing but the inputs is left.
std::set<std::string> Listing(const std::string& dir) {
  const auto r = testing::RunCommand("cd '" + dir + "' && find . -mindepth 1");
  std::set<std::string> names;
  std::istringstream ss(r.out);
  for (std::string line; std::getline(ss, line);) names.insert(line);
  return names;
}

std::string Convert(const std::string& args) {
  return "exec " + testing::Convert() + " " + args;
}
std::string Mobilellm(const std::string& args) {
  return "exec " + testing::Mobilellm() + " " + args;
}

// A budget only makes sense for the native, uninstrumented binary.
bool MeasureRss() {
#if defined(MOBILELLM_ASAN)
  return false;
#else
  return !testing::Emulated();
#endif
}

// ---- making inputs -------------------------------------------------------------------------

void Put(std::string& s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s += char(v >> (8 * i) & 0xFF);
}

// A zip of stored members, as torch.save writes.
std::string Zip(const std::vector<std::pair<std::string, std::string>>& members) {
  std::string out, cd;
  for (const auto& [name, data] : members) {
    const uint32_t crc = Crc32(data.data(), data.size());
    const uint64_t local = out.size();
    out += "PK\x03\x04";
    Put(out, 20, 2), Put(out, 0, 2), Put(out, 0, 2), Put(out, 0, 4);
    Put(out, crc, 4), Put(out, data.size(), 4), Put(out, data.size(), 4);
    Put(out, name.size(), 2), Put(out, 0, 2);
    out += name + data;
    cd += "PK\x01\x02";
    Put(cd, 20, 2), Put(cd, 20, 2), Put(cd, 0, 2), Put(cd, 0, 2), Put(cd, 0, 4);
    Put(cd, crc, 4), Put(cd, data.size(), 4), Put(cd, data.size(), 4);
    Put(cd, name.size(), 2), Put(cd, 0, 2), Put(cd, 0, 2), Put(cd, 0, 2), Put(cd, 0, 2);
    Put(cd, 0, 4), Put(cd, local, 4);
    cd += name;
  }
  const uint64_t cd_offset = out.size();
  out += cd + "PK\x05\x06";
  Put(out, 0, 4), Put(out, members.size(), 2), Put(out, members.size(), 2);
  Put(out, cd.size(), 4), Put(out, cd_offset, 4), Put(out, 0, 2);
  return out;
}

// Pickle opcodes, protocol 2.
struct PickleWriter {
  std::string b = "\x80\x02";
  PickleWriter& Op(const std::string& ops) { return b += ops, *this; }
  PickleWriter& Str(const std::string& s) {
    b += 'X', Put(b, s.size(), 4), b += s;
    return *this;
  }
  PickleWriter& Int(int64_t v) {
    if (v >= 0 && v < 256) return b += 'K', b += char(v), *this;
    b += "\x8a\x08", Put(b, uint64_t(v), 8);
    return *this;
  }
  PickleWriter& Ints(const std::vector<int64_t>& v) {
    b += '(';
    for (int64_t x : v) Int(x);
    return b += 't', *this;
  }
  PickleWriter& Global(const std::string& module, const std::string& name) {
    return b += 'c' + module + '\n' + name + '\n', *this;
  }
  // torch._utils._rebuild_tensor_v2(persistent storage, offset, sizes, strides, False, {})
  PickleWriter& Tensor(const std::string& key, int64_t numel, int64_t offset,
                       const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides) {
    Global("torch._utils", "_rebuild_tensor_v2").Op("((").Str("storage");
    Global("torch", "FloatStorage").Str(key).Str("cpu").Int(numel).Op("tQ");
    Int(offset).Ints(sizes).Ints(strides);
    return Op("\x89}tR");
  }
  PickleWriter& LongGet(uint32_t i) { return b += 'j', Put(b, i, 4), *this; }
};

// gen_*.py's CFG: a tiny MobileLLM config.
std::string ConfigJson() {
  return R"({"architectures": ["MobileLLMForCausalLM"], "model_type": "mobilellm",
    "vocab_size": 4096, "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
    "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": true})";
}

// An HF checkpoint directory holding `pickle` as pytorch_model.bin's data.pkl, with storages.
void MakeCheckpoint(const std::string& dir, const std::string& pickle,
                    std::vector<std::pair<std::string, std::string>> storages = {}) {
  ::mkdir(dir.c_str(), 0755);
  WriteAll(dir + "/config.json", ConfigJson());
  storages.insert(storages.begin(), {"archive/data.pkl", pickle});
  WriteAll(dir + "/pytorch_model.bin", Zip(storages));
}

std::string DemoModel() {
  return MOBILELLM_SOURCE_DIR "/models/demo-austen.mlm";
}

std::string DemoTokenizer() {
  auto demo = ModelFile::Open(DemoModel());
  EXPECT_TRUE(demo.ok()) << demo.status().message();
  return demo.ok() ? std::string((*demo)->Bytes(*(*demo)->Find(format::kTokenizerTensor))) : "";
}

template <class T>
void Patch(std::string& b, uint64_t at, T v) {
  std::memcpy(&b[at], &v, sizeof(v));
}

class Hostile : public ::testing::Test {
 protected:
  TempDir dir_;
};

// ---- the rows ------------------------------------------------------------------------------

// Row 1: a pickled view whose offset + sum((size - 1) * stride) wraps int64.
TEST_F(Hostile, Row1_PickledViewOffsetWraps) {
  PickleWriter p;
  p.Op("}(").Str("model.norm.weight");
  p.Tensor("0", 64, INT64_MAX - (int64_t(1) << 45) + 1, {64}, {int64_t(1) << 40});
  p.Op("u.");
  const std::string ckpt = dir_ / "offwrap";
  MakeCheckpoint(ckpt, p.b, {{"archive/data/0", std::string(256, '\0')}});
  // Variants: the product alone overflows; the sum of two spans overflows.
  PickleWriter q;
  q.Op("}(").Str("model.norm.weight").Tensor("0", 64, 0, {int64_t(1) << 40, 3}, {1 << 30, 1 << 30});
  q.Op("u.");
  MakeCheckpoint(dir_ / "mulwrap", q.b, {{"archive/data/0", std::string(256, '\0')}});
  const auto before = Listing(dir_.path());
  for (const char* name : {"offwrap", "mulwrap"}) {
    const Child c = RunChild(Convert(dir_ / name + " -o " + dir_ / "o.mlm --dtype f32"));
    ExpectOneErrorLine(c, "mobilellm-convert", dir_ / name + "/pytorch_model.bin");
    EXPECT_NE(c.err.find("overflowing"), std::string::npos) << c.err;
  }
  EXPECT_EQ(Listing(dir_.path()), before) << "no output or temporary file is left";
}

// Row 2: containers grow after they were adopted (memo + APPEND): a chain of 1M lists.
std::string DeepChain(int n, bool reachable) {
  PickleWriter p;
  p.Op(
      "]\x94"
      "0");
  for (int i = 1; i <= n; ++i)
    p.Op(
        "]\x94"
        "0");
  for (int i = n - 1; i >= 0; --i) p.LongGet(i + 1).LongGet(i).Op("a0");
  if (reachable) return p.Op("}").Str("x").LongGet(n).Op("s.").b;
  return p.Op("}.").b;
}

TEST_F(Hostile, Row2_PickleNestedThroughTheMemo) {
  const int n = testing::Emulated() ? 100000 : 1000000;
  MakeCheckpoint(dir_ / "deep", DeepChain(n, true));
  MakeCheckpoint(dir_ / "garbage", DeepChain(n, false));
  const auto before = Listing(dir_.path());
  Child c = RunChild(Convert(dir_ / "deep -o " + dir_ / "d.mlm"));
  ExpectOneErrorLine(c, "mobilellm-convert", dir_ / "deep/pytorch_model.bin");
  EXPECT_NE(c.err.find("nested deeper than 64"), std::string::npos) << c.err;
  if (MeasureRss()) {
    EXPECT_LT(c.max_rss_mb, 512);
  }
  // Unreachable from the root, the chain is only garbage to free, flat.
  c = RunChild(Convert(dir_ / "garbage -o " + dir_ / "d.mlm"));
  ExpectOneErrorLine(c, "mobilellm-convert", dir_ / "garbage");
  EXPECT_LT(c.seconds, 60);
  EXPECT_EQ(Listing(dir_.path()), before);
}

Status UnpickleBytes(const std::string& b) {
  return convert::Unpickle(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "t.pkl").status();
}

// Row 2, in process (so ASan sees leaks): exactly 64 levels load, 65 do not, whichever way they
// were built; a list that contains itself, directly or not, is refused and freed.
TEST(HostileUnpickler, RealDepthAndCycles) {
  auto chain = [](int levels) {  // each list is adopted while empty and grows afterwards
    PickleWriter p;
    for (int i = 0; i < levels; ++i) p.Op("]").Op("r"), Put(p.b, uint32_t(i), 4), p.Op("0");
    for (int i = 0; i + 1 < levels; ++i) p.LongGet(i).LongGet(i + 1).Op("a0");
    return p.LongGet(0).Op(".").b;
  };
  EXPECT_TRUE(UnpickleBytes(chain(64)).ok()) << UnpickleBytes(chain(64)).message();
  EXPECT_NE(UnpickleBytes(chain(65)).message().find("nested deeper than 64"), std::string::npos);
  // ] memo0, get0, APPEND: a list inside itself.
  const std::string self(
      "\x80\x02]\x94h\x00"
      "a.",
      8);
  EXPECT_NE(UnpickleBytes(self).message().find("cycle"), std::string::npos)
      << UnpickleBytes(self).message();
  // } memo0, ] memo1, get0, APPEND, POP, "k", get1, SETITEM: dict -> list -> dict.
  const std::string loop(
      "\x80\x02}\x94]\x94h\x00"
      "a0X\x01\x00\x00\x00kh\x01s.",
      20);
  EXPECT_NE(UnpickleBytes(loop).message().find("cycle"), std::string::npos)
      << UnpickleBytes(loop).message();
}

// Row 3: table_offset near 2^64, so that table_offset + count * 128 wraps.
TEST_F(Hostile, Row3_MlmTableOffsetWraps) {
  std::string b = testing::ReadAll(DemoModel());
  ASSERT_GT(b.size(), 512u);
  uint32_t count;
  std::memcpy(&count, &b[32], 4);
  for (uint64_t back : {0, 1, 512, 4096}) {
    Patch<uint64_t>(b, 24, 0 - uint64_t(count) * 128 + 512 - back);
    WriteAll(dir_ / "tw.mlm", b);
    const Child c = RunChild(Mobilellm("info " + dir_ / "tw.mlm"));
    ExpectOneErrorLine(c, "mobilellm", dir_ / "tw.mlm");
    EXPECT_NE(c.err.find("tensor table"), std::string::npos) << c.err;
  }
  // The same file through generate, the path every app takes.
  const Child c = RunChild(Mobilellm("generate -p hi -n 1 -m " + dir_ / "tw.mlm"));
  ExpectOneErrorLine(c, "mobilellm", dir_ / "tw.mlm");
}

// Found by fuzz_model_file (UBSan): a table at an offset that is not a multiple of 8 was read in
// place, entry by entry, from misaligned addresses (undefined behaviour; a trap on some CPUs).
TEST_F(Hostile, MlmTableOffsetMisaligned) {
  std::string b = testing::ReadAll(DemoModel());
  uint64_t table;
  std::memcpy(&table, &b[24], 8);
  for (uint64_t shift : {1, 4, 7}) {
    Patch<uint64_t>(b, 24, table + shift);
    WriteAll(dir_ / "misaligned.mlm", b);
    const auto f = ModelFile::Open(dir_ / "misaligned.mlm");
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.status().message().find("tensor table at offset " + std::to_string(table + shift) +
                                        ": expected a multiple of 8"),
              std::string::npos)
        << f.status().message();
  }
  const Child c = RunChild(Mobilellm("info " + dir_ / "misaligned.mlm"));
  ExpectOneErrorLine(c, "mobilellm", dir_ / "misaligned.mlm");
}

// Row 4: a panel-layout entry with rank 0x7FFFFFFF: the error path must not format the shape.
TEST_F(Hostile, Row4_MlmHugeRankInAnErrorPath) {
  std::string b = testing::ReadAll(DemoModel());
  uint64_t table;
  std::memcpy(&table, &b[24], 8);
  Patch<uint32_t>(b, table + 52, 1);  // layout = panels
  for (uint32_t rank : {0x7FFFFFFFu, 0xFFFFFFFFu, 5u, 0u}) {
    Patch<uint32_t>(b, table + 56, rank);
    WriteAll(dir_ / "rank.mlm", b);
    const Child c = RunChild(Mobilellm("info " + dir_ / "rank.mlm"));
    ExpectOneErrorLine(c, "mobilellm", dir_ / "rank.mlm");
    EXPECT_NE(c.err.find("rank " + std::to_string(rank) + " not in 1..4"), std::string::npos)
        << c.err;
    EXPECT_LT(c.err.size(), 300u) << "a short line, no memory contents";
  }
}

// Row 5: a predictable temporary name planted as a symlink to a victim; --force and the mode.
TEST_F(Hostile, Row5_TempFileCannotBePlantedAndModeIsKept) {
  const std::string hf = testing::FixturesDir() + "/gqa2-untied-st-f32/hf";
  if (!testing::FileExists(hf)) GTEST_SKIP() << "no reference fixtures";
  WriteAll(dir_ / "victim", "precious");
  // The old name was OUT.tmp.<pid>: plant it in the shell that then execs the converter.
  const auto r =
      testing::RunCommand("cd " + dir_.path() + " && ln -s victim out.mlm.tmp.$$ && exec " +
                          testing::Convert() + " " + hf + " -q -o out.mlm");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(testing::ReadAll(dir_ / "victim"), "precious");
  struct stat st;
  ASSERT_EQ(::lstat((dir_ / "out.mlm").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode)) << "out.mlm must be a file, not a symlink";
  // Only the planted link remains beside the output: the converter's temp file was its own.
  auto names = Listing(dir_.path());
  EXPECT_EQ(names.size(), 3u);
  // --force over a 0600 output keeps 0600.
  ASSERT_EQ(::chmod((dir_ / "out.mlm").c_str(), 0600), 0);
  ASSERT_EQ(
      testing::RunCommand(testing::Convert() + " " + hf + " -q --force -o " + dir_ / "out.mlm")
          .exit_code,
      0);
  ASSERT_EQ(::stat((dir_ / "out.mlm").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // A failed --force run leaves the existing output as it was and no temporary file.
  const std::string before = testing::ReadAll(dir_ / "out.mlm");
  names = Listing(dir_.path());
  ::mkdir((dir_ / "bad").c_str(), 0755);
  WriteAll(dir_ / "bad/config.json", ConfigJson());
  WriteAll(dir_ / "bad/pytorch_model.bin", "not a zip");
  names.insert("./bad"), names.insert("./bad/config.json"), names.insert("./bad/pytorch_model.bin");
  const Child c = RunChild(Convert(dir_ / "bad --force -o " + dir_ / "out.mlm"));
  ExpectOneErrorLine(c, "mobilellm-convert", dir_ / "bad/pytorch_model.bin");
  EXPECT_EQ(testing::ReadAll(dir_ / "out.mlm"), before);
  EXPECT_EQ(Listing(dir_.path()), names);
}

// Row 6: wrong JSON types in config.json: one line naming the key and the file, no abort.
TEST_F(Hostile, Row6_ConfigFieldsOfTheWrongType) {
  const std::pair<const char*, const char*> cases[] = {{"layer_sharing", "\"yes\""},
                                                       {"model_type", "5"},
                                                       {"tie_word_embeddings", "1"},
                                                       {"rms_norm_eps", "\"small\""},
                                                       {"vocab_size", "4096.5"},
                                                       {"eos_token_id", "[true]"},
                                                       {"hidden_size", "-1"},
                                                       {"rope_theta", "[]"},
                                                       {"share_embedding", "{}"},
                                                       {"num_hidden_layers", "1e100"},
                                                       {"head_dim", "18446744073709551615"}};
  for (const auto& [key, value] : cases) {
    const std::string ckpt = dir_ / "c";
    ::mkdir(ckpt.c_str(), 0755);
    nlohmann::json json = nlohmann::json::parse(ConfigJson());
    json[key] = nlohmann::json::parse(value);
    WriteAll(ckpt + "/config.json", json.dump());
    const Child c = RunChild(Convert(ckpt + " -o " + dir_ / "o.mlm"));
    ExpectOneErrorLine(c, "mobilellm-convert", ckpt + "/config.json");
    EXPECT_NE(c.err.find(std::string("\"") + key + "\""), std::string::npos) << c.err;
  }
  const std::string bad_arch = dir_ / "c/config.json";
  WriteAll(bad_arch, R"({"architectures": "MobileLLMForCausalLM"})");
  ExpectOneErrorLine(RunChild(Convert(dir_ / "c -o " + dir_ / "o.mlm")), "mobilellm-convert",
                     bad_arch);
  EXPECT_FALSE(testing::FileExists(dir_ / "o.mlm"));
}

// Row 7: 4 MB of 1-byte value opcodes must not cost a gigabyte.
TEST_F(Hostile, Row7_PickleValueAmplification) {
  for (const char op : {'N', ']', ')', '}'}) {
    std::string p = "\x80\x02(";
    for (int left = 4000000; left > 0; left -= 500000) p += '(' + std::string(500000, op) + 'l';
    p += "1}.";
    const std::string ckpt = dir_ / ("amp" + std::to_string(int(op)));
    MakeCheckpoint(ckpt, p);
    const Child c = RunChild(Convert(ckpt + " -o " + dir_ / "a.mlm"));
    ExpectOneErrorLine(c, "mobilellm-convert", ckpt + "/pytorch_model.bin");
    EXPECT_NE(c.err.find("values"), std::string::npos) << c.err;
    if (MeasureRss()) {
      EXPECT_LT(c.max_rss_mb, 256) << "was 969 MB";
    }
  }
  EXPECT_FALSE(testing::FileExists(dir_ / "a.mlm"));
}

// Row 8: an .mlm with 2^20 tensor entries (all-pairs name check took ~30 minutes).
TEST_F(Hostile, Row8_MlmWithAMillionEntries) {
  if (testing::Emulated()) GTEST_SKIP() << "a 134 MB table is minutes of emulation";
  const std::string demo = testing::ReadAll(DemoModel());
  const uint32_t n = format::kMaxTensors;
  const uint64_t table_end = 512 + uint64_t(n) * 128, data = (table_end + 255) / 256 * 256;
  std::string b = demo.substr(0, 512);
  Patch<uint64_t>(b, 16, data + 256);  // file_size
  Patch<uint64_t>(b, 24, 512);         // table_offset
  Patch<uint32_t>(b, 32, n);           // tensor_count
  b.resize(data + 256, '\0');
  for (uint32_t i = 0; i < n; ++i) {
    char* e = &b[512 + uint64_t(i) * 128];
    std::snprintf(e, 48, "t%07u", i);
    const uint32_t fields[4] = {3, 0, 1, 0};  // u8, rows, rank 1
    std::memcpy(e + 48, fields, 16);
    const uint64_t shape = 1, where[2] = {data + 256 * 0, 1};
    std::memcpy(e + 64, &shape, 8);
    std::memcpy(e + 96, where, 16);
  }
  WriteAll(dir_ / "many.mlm", b);
  Child c = RunChild(Mobilellm("info " + dir_ / "many.mlm"));
  ExpectOneErrorLine(c, "mobilellm", dir_ / "many.mlm");
  EXPECT_LT(c.seconds, 60) << "O(n log n), not O(n^2)";
  // Distinct names, each 1 byte at its own aligned offset, with duplicates at the very end.
  b.resize(data + uint64_t(n) * 256, '\0');
  Patch<uint64_t>(b, 16, b.size());
  for (uint32_t i = 0; i < n; ++i)
    Patch<uint64_t>(b, 512 + uint64_t(i) * 128 + 96, data + i * 256ull);
  std::memcpy(&b[512 + uint64_t(n - 1) * 128], "t0000000", 8);
  WriteAll(dir_ / "many.mlm", b);
  c = RunChild(Mobilellm("info " + dir_ / "many.mlm"));
  ExpectOneErrorLine(c, "mobilellm", dir_ / "many.mlm");
  EXPECT_NE(c.err.find("duplicate tensor 't0000000'"), std::string::npos) << c.err;
  EXPECT_LT(c.seconds, 60);
}

// Row 9: a zip with many tensors and members (the storage lookup scanned every member).
TEST_F(Hostile, Row9_ZipWithManyMembers) {
  const int n = testing::Emulated() ? 5000 : 40000;
  PickleWriter p;
  p.Op("}(");
  std::vector<std::pair<std::string, std::string>> storages;
  for (int i = 0; i < n; ++i) {
    p.Str("t" + std::to_string(i)).Tensor(std::to_string(i), 1, 0, {1}, {1});
    storages.push_back({"archive/data/" + std::to_string(i), std::string(4, '\0')});
  }
  p.Op("u.");
  MakeCheckpoint(dir_ / "zq", p.b, storages);
  WriteAll(dir_ / "zq/tokenizer.model", DemoTokenizer());
  const Child c = RunChild(Convert(dir_ / "zq -o " + dir_ / "z.mlm"));
  ExpectOneErrorLine(c, "mobilellm-convert", dir_ / "zq");
  EXPECT_NE(c.err.find("missing tensor 'model.embed_tokens.weight'"), std::string::npos) << c.err;
  EXPECT_LT(c.seconds, 30) << "quadratic took ~60 s at 40k";
  EXPECT_FALSE(testing::FileExists(dir_ / "z.mlm"));
}

// Row 10: the model file is truncated while generate has it mapped.
TEST_F(Hostile, Row10_ModelTruncatedWhileMapped) {
  if (testing::Emulated()) GTEST_SKIP() << "SIGBUS from a host fault is not emulated faithfully";
  const std::string model = dir_ / "t.mlm";
  WriteAll(model, testing::ReadAll(DemoModel()));
  // The prompt arrives on stdin only after the file has shrunk under the loaded model.
  const Child c = RunChild("(sleep 1; truncate -s 1000000 '" + model + "'; echo hi) | exec " +
                           testing::Mobilellm() + " generate -n 8 -m " + model);
  ExpectOneErrorLine(c, "mobilellm", model);
  EXPECT_NE(c.err.find("changed while it was in use"), std::string::npos) << c.err;
}

// Whole-file reads: devices, FIFOs and huge files are refused, not read until memory runs out.
TEST_F(Hostile, FilesReadWholeAreCappedAndRegular) {
  const std::string ckpt = dir_ / "z";
  ::mkdir(ckpt.c_str(), 0755);
  ASSERT_EQ(::symlink("/dev/zero", (ckpt + "/config.json").c_str()), 0);
  Child c = RunChild(Convert(ckpt + " -o " + dir_ / "o.mlm"));
  ExpectOneErrorLine(c, "mobilellm-convert", ckpt + "/config.json");
  EXPECT_NE(c.err.find("not a regular file"), std::string::npos) << c.err;
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  c = RunChild(Convert("--random 125m --tokenizer " + dir_ / "fifo" + " -o " + dir_ / "o.mlm"));
  ExpectOneErrorLine(c, "mobilellm-convert", dir_ / "fifo");
  {
    const int fd = ::open((dir_ / "huge.model").c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, off_t(kMaxReadFile + 1)), 0);  // sparse: no disk used
    ::close(fd);
  }
  c = RunChild(
      Convert("--random 125m --tokenizer " + dir_ / "huge.model" + " -o " + dir_ / "o.mlm"));
  ExpectOneErrorLine(c, "mobilellm-convert", dir_ / "huge.model");
  if (MeasureRss()) {
    EXPECT_LT(c.max_rss_mb, 64);
  }
  c = RunChild(Mobilellm("generate -n 1 -m " + DemoModel() + " -f /dev/zero"));
  ExpectOneErrorLine(c, "mobilellm", "/dev/zero");
  EXPECT_FALSE(testing::FileExists(dir_ / "o.mlm"));
}

// A shard that is a symlink to a system file: the message names it but shows none of its bytes.
TEST_F(Hostile, ShardSymlinkedToASystemFileIsNotQuoted) {
  const std::string ckpt = dir_ / "s";
  ::mkdir(ckpt.c_str(), 0755);
  WriteAll(ckpt + "/config.json", ConfigJson());
  const std::string secret = "root:x:0:0:secret-content\n";
  WriteAll(dir_ / "system-file", secret + std::string(100, 'z'));
  for (const char* shard : {"model-1.safetensors", "model-1.bin"}) {
    const std::string stem = std::string(shard).find(".bin") != std::string::npos
                                 ? "pytorch_model.bin"
                                 : "model.safetensors";
    testing::RunCommand("rm -f " + ckpt + "/*.index.json " + ckpt + "/model-1.*");
    ASSERT_EQ(::symlink((dir_ / "system-file").c_str(), (ckpt + "/" + shard).c_str()), 0);
    WriteAll(ckpt + "/" + stem + ".index.json",
             std::string(R"({"weight_map": {"a": ")") + shard + "\"}}");
    const Child c = RunChild(Convert(ckpt + " -o " + dir_ / "o.mlm"));
    ExpectOneErrorLine(c, "mobilellm-convert", ckpt + "/" + shard);
    EXPECT_EQ(c.err.find("root"), std::string::npos) << c.err;
    uint64_t first8;
    std::memcpy(&first8, secret.data(), 8);
    EXPECT_EQ(c.err.find(std::to_string(first8)), std::string::npos) << c.err;
  }
}

// Safetensors headers (and any JSON the converter reads) are checked for depth and value count
// before a DOM is built: 20 MB of brackets or of "{}," took ~700 MB and ~30 s.
TEST_F(Hostile, SafetensorsHeaderAmplification) {
  const size_t n = 20000000;
  const std::string variants[] = {
      std::string(n / 2, '[') + std::string(n / 2, ']'), "{\"a\":[" + [&] {
        std::string s;
        for (size_t i = 0; i < n / 3; ++i) s += "{},";
        return s;
      }() + "{}]}"};
  for (const std::string& h : variants) {
    const std::string ckpt = dir_ / "st";
    ::mkdir(ckpt.c_str(), 0755);
    WriteAll(ckpt + "/config.json", ConfigJson());
    std::string file;
    Put(file, h.size(), 8);
    WriteAll(ckpt + "/model.safetensors", file + h);
    const Child c = RunChild(Convert(ckpt + " -o " + dir_ / "o.mlm"));
    ExpectOneErrorLine(c, "mobilellm-convert", ckpt + "/model.safetensors");
    if (MeasureRss()) {
      EXPECT_LT(c.max_rss_mb, 256);
    }
    EXPECT_LT(c.seconds, 20);
  }
  EXPECT_FALSE(testing::FileExists(dir_ / "o.mlm"));
}

// SentencePiece: Encode's cost must not grow with prompt length x user-defined pieces, and the
// longest user-defined piece still wins.
std::string Field(int number, int wire, const std::string& payload) {
  std::string out;
  auto varint = [&](uint64_t v) {
    do {
      out += char((v & 0x7F) | (v >= 0x80 ? 0x80 : 0));
      v >>= 7;
    } while (v);
  };
  varint(uint64_t(number) << 3 | uint64_t(wire));
  if (wire == 2) varint(payload.size());
  return out + payload;
}
std::string Piece(const std::string& text, int type) {
  std::string type_field = Field(3, 0, "");
  type_field += char(type);
  return Field(1, 2, Field(1, 2, text) + Field(2, 5, std::string(4, '\0')) + type_field);
}

TEST(HostileTokenizer, ManyUserDefinedPiecesAndALongPrompt) {
  std::string proto = Piece("<unk>", 2) + Piece("<s>", 3) + Piece("</s>", 3);
  const int n = 50000;
  for (int i = 0; i < n; ++i) proto += Piece("u" + std::to_string(i), 4);
  proto += Piece("x", 4) + Piece("xy", 4) + Piece("xyz", 4);
  std::string trainer = Field(3, 0, "");
  trainer += char(2);  // BPE
  proto += Field(2, 2, trainer);
  auto tok = Tokenizer::Parse(proto);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  const auto ids = tok->Encode("xyzxyx");
  const std::vector<int> want = {0, 3 + n + 2, 3 + n + 1, 3 + n};  // ▁ is <unk>; longest first
  EXPECT_EQ(ids, want);
  std::string prompt;
  while (prompt.size() < 200000) prompt += "u19999u7zq";
  const auto t0 = std::chrono::steady_clock::now();
  const auto long_ids = tok->Encode(prompt);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  200 KB prompt x %d user-defined pieces: %.3f s\n", n, s);
  EXPECT_EQ(long_ids[1], 3 + 19999) << "u19999 whole, not u1 + 9999";
  if (!testing::Emulated()) {
    EXPECT_LT(s, 20) << "was ~ prompt length x pieces";
  }
  // Piece text is escaped in messages.
  auto dup = Tokenizer::Parse(Piece("\x1b[2J", 1) + Piece("\x1b[2J", 1) + Field(2, 2, trainer));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().message().find('\x1b'), std::string::npos) << dup.status().message();
}

}  // namespace
}  // namespace mobilellm

// The mobilellm CLI as a user runs it: output shapes, exit codes, one-line errors.
#include "mobilellm/format.h"
#include "mobilellm/threadpool.h"
#include "test_util.h"

namespace mobilellm {
namespace {

using testing::RunCommand;
using testing::TempDir;

// `generate --json` ends stdout with exactly one line holding the JSON object.
nlohmann::json LastJsonLine(const std::string& out) {
  EXPECT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  const size_t start = out.rfind('\n', out.size() - 2);
  return nlohmann::json::parse(out.substr(start == std::string::npos ? 0 : start + 1));
}

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    testing::ConvertCase("ls-gqa3-tied-bin-f32", "f32", Model());
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string Model() { return *dir_ / "ls.mlm"; }
  static TempDir* dir_;
};
TempDir* Cli::dir_ = nullptr;

TEST_F(Cli, GenerateJsonIsTheLastLineAndMatchesTheReference) {
  const auto golden =
      testing::ReadJson(testing::FixturesDir() + "/ls-gqa3-tied-bin-f32/golden.json");
  const auto r = RunCommand(testing::Mobilellm() + " generate -m " + Model() +
                            " -p 'Mr. Bennet' --temp 0 -n 16 --json -t 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = LastJsonLine(r.out);
  EXPECT_EQ(j["prompt_ids"][0], 1) << "BOS first";
  EXPECT_LE(j["ids"].size(), 16u);
  EXPECT_TRUE(j["text"].is_string());
  for (const char* k : {"load_ms", "prefill_tokens_per_s", "decode_tokens_per_s"})
    EXPECT_TRUE(j["timings"].contains(k)) << k;
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << "timings on stderr";
  // Same prompt through `tokenize`.
  const auto t = RunCommand(testing::Mobilellm() + " tokenize -m " + Model() + " -p 'Mr. Bennet'");
  std::string ids;
  for (size_t i = 0; i < j["prompt_ids"].size(); ++i)
    ids += (i ? " " : "") + std::to_string(j["prompt_ids"][i].get<int>());
  EXPECT_EQ(t.out, ids + "\n");
}

TEST_F(Cli, PromptFromFileAndStdin) {
  TempDir d;
  testing::WriteAll(d / "p.txt", "Mr. Bennet");
  const auto a = RunCommand(testing::Mobilellm() + " generate -m " + Model() + " -f " +
                            d / "p.txt" + " --temp 0 -n 8 --json");
  const auto b = RunCommand("printf 'Mr. Bennet' | " + testing::Mobilellm() + " generate -m " +
                            Model() + " --temp 0 -n 8 --json");
  const auto c = RunCommand(testing::Mobilellm() + " generate -m " + Model() +
                            " -p 'Mr. Bennet' --temp 0 -n 8 --json");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  auto ids = [](const std::string& out) { return LastJsonLine(out)["ids"]; };
  EXPECT_EQ(ids(a.out), ids(c.out));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(ids(b.out), ids(c.out));
}

TEST_F(Cli, TextIsStreamedAfterThePrompt) {
  const auto r = RunCommand(testing::Mobilellm() + " generate -m " + Model() +
                            " -p 'Mr. Bennet' --temp 0.8 --seed 7 -n 8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Mr. Bennet", 0), 0u) << r.out;
  const auto again = RunCommand(testing::Mobilellm() + " generate -m " + Model() +
                                " -p 'Mr. Bennet' --temp 0.8 --seed 7 -n 8");
  EXPECT_EQ(r.out, again.out) << "--seed reproduces";
}

TEST_F(Cli, UsageErrorsExitTwo) {
  for (const char* args : {"", "generate --no-such-flag", "generate -n -3", "frobnicate", "info",
                           "generate --top-p 2"}) {
    const auto r = RunCommand(testing::Mobilellm() + " " + args);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.err;
  }
  EXPECT_EQ(RunCommand(testing::Mobilellm() + " --help").exit_code, 0);
  EXPECT_NE(RunCommand(testing::Mobilellm() + " generate --help").out.find("--repeat-penalty"),
            std::string::npos);
}

TEST_F(Cli, PromptLongerThanTheContextSaysBothLengths) {
  const auto r = RunCommand(testing::Mobilellm() + " generate -m " + Model() +
                            " -c 4 -p 'Mr. Bennet was among the earliest'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("more than the context of 4"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.out, "") << "the prompt must not be echoed before the error is known";
}

// Every command that fails after its model loaded: stdout stays empty, so a script reading it sees
// the whole result or nothing. (Load errors are in BadModelFilesGetOneLine.)
TEST_F(Cli, NothingReachesStdoutBeforeAnError) {
  TempDir d;
  const auto expect_error_only = [](const std::string& args, const std::string& message) {
    const auto r = RunCommand(testing::Mobilellm() + " " + args);
    EXPECT_EQ(r.exit_code, 1) << args << ": " << r.err;
    EXPECT_EQ(r.out, "") << args;
    // The error is stderr's last line (bench's progress lines may come before it).
    const size_t last = r.err.rfind('\n', r.err.size() - 2);
    const std::string line = r.err.substr(last == std::string::npos ? 0 : last + 1);
    EXPECT_EQ(line.rfind("mobilellm: error: ", 0), 0u) << args << ": " << r.err;
    EXPECT_NE(line.find(message), std::string::npos) << args << ": " << r.err;
  };
  // generate: a prompt longer than the context, also as JSON and from a file.
  testing::WriteAll(d / "long.txt", "Mr. Bennet was among the earliest of those who waited on him");
  expect_error_only("generate -m " + Model() + " -c 4 -f " + d / "long.txt",
                    "more than the context");
  expect_error_only("generate -m " + Model() + " -c 4 --json -f " + d / "long.txt",
                    "more than the context");
  // info --verify: a flipped bit in a tensor's data is found after the header parsed.
  std::string bytes = testing::ReadAll(Model());
  const auto& h = *reinterpret_cast<const format::FileHeader*>(bytes.data());
  const auto& e = *reinterpret_cast<const format::TensorEntry*>(bytes.data() + h.table_offset);
  bytes[e.offset + 5] ^= 0x40;
  testing::WriteAll(d / "flip.mlm", bytes);
  expect_error_only("info --verify " + d / "flip.mlm", "checksum mismatch");
  // perplexity: a text with no tokens.
  testing::WriteAll(d / "empty.txt", "");
  expect_error_only("perplexity -m " + Model() + " -f " + d / "empty.txt", "no tokens");
  // bench: the second model fails after the first row was measured.
  testing::WriteAll(d / "cut.mlm", bytes.substr(0, bytes.size() / 2));
  expect_error_only("bench -m " + Model() + " -m " + d / "cut.mlm" + " -p 4 -n 4 -r 1",
                    "truncated");
  // tokenize: a model that does not load.
  expect_error_only("tokenize -m " + d / "cut.mlm" + " -p hi", "truncated");
}

TEST_F(Cli, ContextEndStopsCleanlyWithANote) {
  const auto r = RunCommand(testing::Mobilellm() + " generate -m " + Model() +
                            " -c 8 -p 'Mr.' --temp 0.5 --seed 1 -n 100 --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto j = LastJsonLine(r.out);
  if (j["stop_reason"] != "eos") {
    EXPECT_EQ(j["stop_reason"], "context_full");
    EXPECT_NE(r.err.find("end of the context"), std::string::npos) << r.err;
  }
}

TEST_F(Cli, BadModelFilesGetOneLine) {
  TempDir d;
  testing::WriteAll(d / "x.gguf", std::string("GGUF\x03\0\0\0", 8) + std::string(600, '\0'));
  auto r = RunCommand(testing::Mobilellm() + " generate -m " + d / "x.gguf" + " -p hi");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "mobilellm: error: " + d / "x.gguf" +
                       ": bad magic: expected 'MLM1', found 'GGUF' (is this a GGUF file? mobilellm "
                       "reads .mlm files: "
                       "convert the HF checkpoint with mobilellm-convert)\n");
  const std::string good = testing::ReadAll(Model());
  testing::WriteAll(d / "cut.mlm", good.substr(0, good.size() / 2));
  r = RunCommand(testing::Mobilellm() + " info " + d / "cut.mlm");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("truncated: header says"), std::string::npos) << r.err;
  r = RunCommand(testing::Mobilellm() + " generate -m " + d / "missing.mlm");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot open: No such file or directory"), std::string::npos) << r.err;
}

// More threads than CPUs: one warning line, and the run uses as many threads as there are CPUs
// (bench/oversubscription.sh prints what that does for speed).
TEST_F(Cli, ThreadsBeyondTheCpusAreClampedWithOneWarning) {
  const int cpus = AvailableCpus();
  const auto r = RunCommand(testing::Mobilellm() + " generate -m " + Model() +
                            " -p 'Mr. Bennet' --temp 0 -n 4 --json -t 256");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LastJsonLine(r.out)["threads"], std::min(cpus, 256));
  const std::string warning = "mobilellm: warning: -t 256 is more than the " +
                              std::to_string(cpus) + " CPU" + (cpus == 1 ? "" : "s") +
                              " this process may use; using " + std::to_string(cpus) + " threads\n";
  if (cpus < 256) {
    EXPECT_EQ(r.err.rfind(warning, 0), 0u) << r.err;
  }
  const auto fine = RunCommand(testing::Mobilellm() + " generate -m " + Model() +
                               " -p 'Mr. Bennet' --temp 0 -n 4 --json -t 1");
  EXPECT_EQ(fine.err.find("warning"), std::string::npos) << fine.err;
}

// Progress: plain lines in a log (no carriage return, at most one per quarter), a bar with the
// rate and the time left on a terminal (a pty from script(1)).
TEST_F(Cli, ProgressIsABarOnATerminalAndAFewLinesElsewhere) {
  const std::string ppl = testing::Mobilellm() + " perplexity -m " + Model() + " -f " +
                          MOBILELLM_SOURCE_DIR + "/tests/testdata/corpus.txt -c 32";
  const auto plain = RunCommand(ppl);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(plain.err.find('\r'), std::string::npos) << plain.err;
  EXPECT_GE(std::count(plain.err.begin(), plain.err.end(), '\n'), 1) << plain.err;
  EXPECT_LE(std::count(plain.err.begin(), plain.err.end(), '\n'), 4) << plain.err;
  EXPECT_NE(plain.err.find("perplexity: 100%"), std::string::npos) << plain.err;
  EXPECT_NE(plain.err.find("tokens/s"), std::string::npos) << plain.err;
  EXPECT_NE(plain.out.find("perplexity"), std::string::npos) << plain.out;

  const auto tty = RunCommand("script -qfec \"" + ppl + "\" /dev/null");
  ASSERT_EQ(tty.exit_code, 0) << tty.out;
  EXPECT_NE(tty.out.find("\r\033[Kperplexity ["), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find("] 100%"), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find(" left"), std::string::npos) << tty.out;

  const auto bench = RunCommand(testing::Mobilellm() + " bench -m " + Model() +
                                " -p 4 -n 4 -r 1 -t 1,1 --output json");
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  EXPECT_EQ(bench.err.find('\r'), std::string::npos) << bench.err;
  EXPECT_EQ(std::count(bench.err.begin(), bench.err.end(), '\n'), 2)
      << "a line per row: " << bench.err;
}

TEST_F(Cli, InfoVerify) {
  const auto r = RunCommand(testing::Mobilellm() + " info --verify " + Model());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("blocks 3 x repeat 2 = 6 layers"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checksums match"), std::string::npos) << r.out;
}

TEST_F(Cli, VerbosePrintsTheKernelTable) {
  const auto r = RunCommand(testing::Mobilellm() + " generate -m " + Model() + " -p hi -n 1 -v");
  EXPECT_NE(r.err.find("kernels: "), std::string::npos) << r.err;
  const auto ref = RunCommand("MOBILELLM_ISA=ref " + testing::Mobilellm() + " generate -m " +
                              Model() + " -p hi -n 1 -v");
  EXPECT_NE(ref.err.find("kernels: ref"), std::string::npos) << ref.err;
  // An unknown table is a warning on every run, not only with -v; the run goes on.
  const auto bad = RunCommand("MOBILELLM_ISA=avx9000 " + testing::Mobilellm() + " generate -m " +
                              Model() + " -p hi -n 1");
  EXPECT_EQ(bad.exit_code, 0) << bad.err;
  EXPECT_NE(bad.err.find("warning: MOBILELLM_ISA=avx9000: unknown kernel table"), std::string::npos)
      << bad.err;
}

}  // namespace
}  // namespace mobilellm

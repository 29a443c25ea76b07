// Session::Truncate, Save and Load: a rewound or reloaded session computes bit for bit what a fresh
// one fed the same ids computes, and every corrupt or mismatched session file is refused with one
// line, leaving the session as it was.
#include <cstring>
#include <fstream>
#include <iterator>

#include "mobilellm/mobilellm.h"
#include "test_util.h"

namespace mobilellm {
namespace {

std::vector<int> Ids(int n, int start) {
  std::vector<int> ids;
  for (int i = 0; i < n; ++i) ids.push_back(1 + (start + i * 7) % 100);
  return ids;
}

std::unique_ptr<Session> NewSession(const std::shared_ptr<const Model>& model, DType kv,
                                    int n_ctx = 0) {
  SessionOptions o;
  o.kv_type = kv;
  o.n_ctx = n_ctx;
  o.n_threads = 2;
  return std::move(Session::Create(model, o)).value();
}

bool SameLogits(const Session& a, const Session& b) {
  const int vocab = a.model().config().vocab_size;
  return std::memcmp(a.logits(), b.logits(), size_t(vocab) * sizeof(float)) == 0;
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void Spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

class SessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir;
    testing::ConvertCase("ls-gqa3-tied-bin-f32", "f32", *dir_ / "m.mlm");
    testing::ConvertCase("ls-gqa3-tied-bin-f32", "q8_0", *dir_ / "q.mlm");
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::shared_ptr<const Model> Load(const char* name) {
    return std::move(Model::Load(*dir_ / name)).value();
  }
  static testing::TempDir* dir_;
};
testing::TempDir* SessionTest::dir_ = nullptr;

TEST_F(SessionTest, TruncateThenEvaluateEqualsFresh) {
  const auto model = Load("m.mlm");
  for (DType kv : {DType::kF32, DType::kF16}) {
    // 70 tokens span several key blocks; cut inside one and at its start.
    for (int keep : {0, 1, 13, 16, 32, 69}) {
      auto s = NewSession(model, kv);
      const std::vector<int> first = Ids(70, 0), more = Ids(9, 3);
      ASSERT_TRUE(s->Evaluate(first).ok());
      EXPECT_EQ(s->tokens(), first);
      s->Truncate(keep);
      EXPECT_EQ(s->pos(), keep);
      ASSERT_TRUE(s->Evaluate(more).ok());

      std::vector<int> all(first.begin(), first.begin() + keep);
      all.insert(all.end(), more.begin(), more.end());
      auto fresh = NewSession(model, kv);
      ASSERT_TRUE(fresh->Evaluate(all).ok());
      EXPECT_EQ(s->tokens(), all);
      EXPECT_TRUE(SameLogits(*s, *fresh)) << "keep " << keep;
    }
  }
}

// logits() is well defined at every step: nullptr when nothing was evaluated since Create, a
// Truncate that removed tokens, Reset or Load; after one token more, a fresh session's.
TEST_F(SessionTest, LogitsAreNullUntilATokenIsEvaluated) {
  const auto model = Load("m.mlm");
  auto s = NewSession(model, DType::kF32);
  EXPECT_EQ(s->logits(), nullptr);
  ASSERT_TRUE(s->Evaluate(Ids(10, 0)).ok());
  const float* after = s->logits();
  ASSERT_NE(after, nullptr);
  s->Truncate(10);  // removes nothing: the logits stay
  EXPECT_EQ(s->logits(), after);
  s->Truncate(6);
  EXPECT_EQ(s->logits(), nullptr);
  EXPECT_EQ(s->logits_at(0), nullptr);
  const int seventh = Ids(10, 0)[6];
  ASSERT_TRUE(s->Evaluate(&seventh, 1).ok());
  EXPECT_EQ(s->logits(), after) << "the decoder's buffer, refilled";
  testing::TempDir dir;
  ASSERT_TRUE(s->Save(dir / "s").ok());
  auto loaded = NewSession(model, DType::kF32);
  ASSERT_TRUE(loaded->Load(dir / "s").ok());
  EXPECT_EQ(loaded->logits(), nullptr);
  const int next = 42;
  ASSERT_TRUE(loaded->Evaluate(&next, 1).ok());
  ASSERT_TRUE(s->Evaluate(&next, 1).ok());
  EXPECT_TRUE(SameLogits(*loaded, *s));
  loaded->Reset();
  EXPECT_EQ(loaded->logits(), nullptr);
}

TEST_F(SessionTest, TruncateBeyondPosChangesNothing) {
  const auto model = Load("m.mlm");
  auto s = NewSession(model, DType::kF16);
  ASSERT_TRUE(s->Evaluate(Ids(5, 0)).ok());
  s->Truncate(9);
  EXPECT_EQ(s->pos(), 5);
  s->Reset();
  EXPECT_EQ(s->pos(), 0);
  EXPECT_TRUE(s->tokens().empty());
}

TEST_F(SessionTest, SaveLoadEqualsUninterrupted) {
  const auto model = Load("m.mlm");
  for (DType kv : {DType::kF32, DType::kF16}) {
    auto s = NewSession(model, kv);
    ASSERT_TRUE(s->Evaluate(Ids(37, 1)).ok());
    const std::string path = *dir_ / "s.session";
    ASSERT_TRUE(s->Save(path).ok());
    // A smaller context loads it too, as long as it fits: the file does not depend on n_ctx.
    for (int n_ctx : {0, 40}) {
      auto loaded = NewSession(model, kv, n_ctx);
      ASSERT_TRUE(loaded->Evaluate(Ids(3, 5)).ok());  // replaced by the load
      const Status st = loaded->Load(path);
      ASSERT_TRUE(st.ok()) << st.message();
      EXPECT_EQ(loaded->tokens(), s->tokens());
      auto original = NewSession(model, kv);
      ASSERT_TRUE(original->Evaluate(Ids(37, 1)).ok());
      ASSERT_TRUE(original->Evaluate(Ids(2, 9)).ok());
      ASSERT_TRUE(loaded->Evaluate(Ids(2, 9)).ok());
      EXPECT_TRUE(SameLogits(*loaded, *original)) << "n_ctx " << n_ctx;
    }
  }
}

TEST_F(SessionTest, SaveIsAtomicAndReplaces) {
  const auto model = Load("m.mlm");
  auto s = NewSession(model, DType::kF16);
  const std::string path = *dir_ / "r.session";
  ASSERT_TRUE(s->Evaluate(Ids(4, 0)).ok());
  ASSERT_TRUE(s->Save(path).ok());
  ASSERT_TRUE(s->Evaluate(Ids(4, 1)).ok());
  ASSERT_TRUE(s->Save(path).ok());
  auto t = NewSession(model, DType::kF16);
  ASSERT_TRUE(t->Load(path).ok());
  EXPECT_EQ(t->pos(), 8);
  EXPECT_FALSE(s->Save(*dir_ / "no-such-dir/x.session").ok());
}

TEST_F(SessionTest, RefusesEachBadFileLeavingTheSessionAsItWas) {
  const auto model = Load("m.mlm");
  auto s = NewSession(model, DType::kF16);
  ASSERT_TRUE(s->Evaluate(Ids(20, 2)).ok());
  const std::string good = *dir_ / "good.session";
  ASSERT_TRUE(s->Save(good).ok());
  const std::string bytes = Slurp(good);
  ASSERT_GT(bytes.size(), 64u + 80u);

  auto target = NewSession(model, DType::kF16);
  ASSERT_TRUE(target->Evaluate(Ids(6, 4)).ok());
  const std::vector<int> before = target->tokens();
  const auto refused = [&](Session& into, const std::string& file_bytes, const char* expect) {
    const std::string path = *dir_ / "bad.session";
    Spit(path, file_bytes);
    const Status st = into.Load(path);
    EXPECT_FALSE(st.ok()) << expect;
    EXPECT_NE(st.message().find(expect), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
    EXPECT_EQ(st.message().find('\n'), std::string::npos) << st.message();
  };
  const auto patched = [&](size_t offset, uint32_t value) {
    std::string b = bytes;
    std::memcpy(&b[offset], &value, 4);
    return b;
  };
  refused(*target, "", "not a mobilellm session file");
  refused(*target, "GGUF and some more bytes", "not a mobilellm session file");
  refused(*target, bytes.substr(0, 40), "truncated");
  refused(*target, bytes.substr(0, bytes.size() - 1), "truncated");
  refused(*target, bytes.substr(0, 64), "truncated");
  refused(*target, bytes + "x", "bytes after the end");
  refused(*target, patched(8, 2), "version 2");
  refused(*target, patched(12, 65), "corrupt header");
  refused(*target, patched(60, 1), "corrupt header");
  refused(*target, patched(16, 0x1234), "different model");
  refused(*target, patched(24, 7), "different model");
  refused(*target, patched(52, 0xffffffffu), "do not fit");
  refused(*target, patched(52, 21), "truncated");
  std::string flipped = bytes;
  flipped[bytes.size() - 3] ^= 1;
  refused(*target, flipped, "checksum mismatch");
  flipped = bytes;
  flipped[64] ^= 1;
  refused(*target, flipped, "checksum mismatch");
  EXPECT_EQ(target->tokens(), before);

  // The same file offered to a session it does not fit.
  auto f32 = NewSession(model, DType::kF32);
  refused(*f32, bytes, "saved with a f16 KV cache, this session's is f32");
  auto small = NewSession(model, DType::kF16, 16);
  refused(*small, bytes, "20 tokens do not fit this session's context of 16");
  auto other = NewSession(Load("q.mlm"), DType::kF16);
  refused(*other, bytes, "saved for a different model");
  EXPECT_EQ(other->pos(), 0);

  const Status missing = target->Load(*dir_ / "missing.session");
  EXPECT_FALSE(missing.ok());
}

}  // namespace
}  // namespace mobilellm

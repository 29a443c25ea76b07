// "Nothing allocated per token": decode steps (Evaluate + Sample, repetition penalty on) make no
// heap allocation once the session is warm, and a chat turn's allocations do not grow with its
// reply. Counts calls to the global operator new.
#include <atomic>
#include <cstdlib>
#include <new>

#include "mobilellm/chat.h"
#include "mobilellm/mobilellm.h"
#include "test_util.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<size_t> g_allocations{0};
}  // namespace

void* operator new(size_t n) {
  if (g_counting.load(std::memory_order_relaxed))
    g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
// These replace the global pair, so free() is right for what the operator new above returned; GCC
// (sanitizer build) cannot see the pairing and warns.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace mobilellm {
namespace {

TEST(Allocations, NonePerDecodedToken) {
  testing::TempDir dir;
  for (const char* dtype : {"f32", "q8_0"}) {
    testing::ConvertCase("ls-gqa3-tied-bin-f32", dtype, dir / "m.mlm");
    auto model = Model::Load(dir / "m.mlm");
    ASSERT_TRUE(model.ok());
    for (int threads : {1, 2}) {
      SessionOptions o;
      o.n_threads = threads;
      auto s = std::move(Session::Create(*model, o)).value();
      SamplerOptions so;
      so.repeat_penalty = 1.2f;
      so.seed = 1;
      Sampler sampler(so);
      std::vector<int> history = {1, 50, 60, 70};
      history.reserve(64);
      ASSERT_TRUE(s->Evaluate(history).ok());
      for (int warm = 0; warm < 2; ++warm) {
        int id = sampler.Sample(s->logits(), (*model)->config().vocab_size, history);
        history.push_back(id);
        ASSERT_TRUE(s->Evaluate(&id, 1).ok());
      }
      g_allocations = 0;
      g_counting = true;
      for (int step = 0; step < 16; ++step) {
        int id = sampler.Sample(s->logits(), (*model)->config().vocab_size, history);
        history.push_back(id);
        if (!s->Evaluate(&id, 1).ok()) break;
      }
      // Rewinding (as chat does every turn) and decoding again allocates nothing either: the
      // token history was reserved for the whole context.
      s->Truncate(4);
      for (int step = 0; step < 8; ++step) {
        int id = history[size_t(step) + 4];
        if (!s->Evaluate(&id, 1).ok()) break;
      }
      g_counting = false;
      EXPECT_EQ(g_allocations.load(), 0u) << dtype << ", " << threads << " threads";
      EXPECT_EQ(s->pos(), 12);
    }
  }
}

// The chat decode path (Chat::Send -> Generate, with the template's end-of-turn text as a stop
// string): a turn allocates for its prompt, never per reply token, so a 16-token reply and a
// 48-token one allocate the same number of times.
TEST(Allocations, NonePerChatReplyToken) {
  testing::TempDir dir;
  const auto c =
      testing::RunCommand(testing::Convert() + " " + testing::Hf("ls-gqa3-tied-bin-f32") + " -o " +
                          dir / "m.mlm" + " -q --dtype f32 --chat-template " +
                          MOBILELLM_SOURCE_DIR + "/tests/testdata/templates/chatml.jinja");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  auto model = std::move(Model::Load(dir / "m.mlm")).value();
  const auto allocations = [&](int n) {
    SessionOptions o;
    o.n_threads = 1;
    auto s = std::move(Session::Create(model, o)).value();
    auto chat = std::move(Chat::Create(*s, {"system", "Be brief."})).value();
    GenerateOptions go;
    go.max_tokens = n;
    go.sampling.temperature = 0;
    go.sampling.repeat_penalty = 1.2f;
    const TokenCallback on_text = [](std::string_view, int) { return true; };
    const ChatMessage hello{"user", "Hello"};
    g_allocations = 0;
    g_counting = true;
    auto turn = chat->Send(hello, go, on_text);
    g_counting = false;
    EXPECT_TRUE(turn.ok());
    EXPECT_EQ(turn->reply.stop_reason, StopReason::kMaxTokens);
    EXPECT_EQ(int(turn->reply.ids.size()), n);
    return g_allocations.load();
  };
  const size_t short_reply = allocations(16), long_reply = allocations(48);
  EXPECT_EQ(long_reply, short_reply);
  EXPECT_GT(short_reply, 0u) << "the counter counts";
}

}  // namespace
}  // namespace mobilellm

// `mobilellm chat` as a script and a user drive it: a scripted chat equals `generate` on the
// rendered conversation, turn 2 reuses all of turn 1, the context drops its oldest exchanges,
// every stop reason, one-line errors, and (chat_pty.py) Ctrl-C on a terminal.
#include <algorithm>
#include <sstream>

#include "mobilellm/chat.h"
#include "test_util.h"

namespace mobilellm {
namespace {

using nlohmann::json;
using testing::RunCommand;
using testing::TempDir;

const char* const kCase = "ls-gqa3-tied-bin-f32";

std::string Template(const std::string& name) {
  return std::string(MOBILELLM_SOURCE_DIR) + "/tests/testdata/templates/" + name;
}

// The JSON lines of `out`.
std::vector<json> JsonLines(const std::string& out) {
  std::vector<json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  return lines;
}

class ChatCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const auto r = RunCommand(testing::Convert() + " " + testing::Hf(kCase) + " -o " + Model() +
                              " -q --dtype f32 --chat-template " + Template("chatml.jinja"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string Model() { return *dir_ / "chat.mlm"; }
  // Runs chat on `model` with `flags`, stdin holding `lines`.
  static testing::CommandResult Chat(const std::string& flags, const std::string& lines,
                                     const std::string& model = Model()) {
    TempDir tmp;
    testing::WriteAll(tmp / "in", lines);
    return RunCommand(testing::Mobilellm() + " chat -m " + model + " -t 1 " + flags + " < " +
                      tmp / "in");
  }
  static TempDir* dir_;
};
TempDir* ChatCli::dir_ = nullptr;

TEST_F(ChatCli, ScriptedChatEqualsGenerateAndReusesTurnOne) {
  const auto r = Chat("--json --temp 0 -n 12", "Hello there\nAnd again\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto turns = JsonLines(r.out);
  ASSERT_EQ(turns.size(), 2u) << r.out;

  auto model = std::move(Model::Load(Model())).value();
  const std::string rendered = *model->ApplyChatTemplate({{"user", "Hello there"}}, true);
  EXPECT_EQ(turns[0]["turn"], 1);
  EXPECT_EQ(turns[0]["n_reused"], 0);
  EXPECT_EQ(turns[0]["prompt_ids"].get<std::vector<int>>(), model->Tokenize(rendered, false));
  EXPECT_EQ(turns[0]["stop_reason"], "max_tokens");
  EXPECT_EQ(turns[0]["ids"].size(), 12u);

  // The reply is generate's on the rendered text (no BOS of its own: the template writes any).
  TempDir tmp;
  testing::WriteAll(tmp / "prompt", rendered);
  const auto g = RunCommand(testing::Mobilellm() + " generate -m " + Model() + " -f " +
                            tmp / "prompt" + " --no-bos --temp 0 -n 12 -t 1 --json");
  ASSERT_EQ(g.exit_code, 0) << g.err;
  const json gen = JsonLines(g.out).back();
  EXPECT_EQ(gen["prompt_ids"], turns[0]["prompt_ids"]);
  EXPECT_EQ(gen["ids"], turns[0]["ids"]);
  EXPECT_EQ(gen["text"], turns[0]["text"]);

  // Turn 2 evaluates nothing of turn 1 again: its prompt and its whole reply are reused.
  EXPECT_EQ(turns[1]["turn"], 2);
  EXPECT_EQ(turns[1]["n_reused"].get<size_t>(),
            turns[0]["prompt_ids"].size() + turns[0]["ids"].size());
  const std::string both = *model->ApplyChatTemplate(
      {{"user", "Hello there"}, {"assistant", turns[0]["text"]}, {"user", "And again"}}, true);
  std::string tail = both.substr(rendered.size() + turns[0]["text"].get<std::string>().size());
  // ... tokenized as the continuation it is (no SentencePiece dummy prefix in mid-conversation).
  EXPECT_EQ(turns[1]["prompt_ids"].get<std::vector<int>>(), model->tokenizer().Encode(tail, true));
  EXPECT_NE(model->tokenizer().Encode(tail, true), model->Tokenize(tail, false));

  // The same chat as JSON messages.
  const auto j = Chat("--json --temp 0 -n 12",
                      "{\"role\": \"user\", \"content\": \"Hello there\"}\n"
                      "{\"role\":\"user\",\"content\":\"And again\"}\n");
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const auto same = JsonLines(j.out);
  ASSERT_EQ(same.size(), 2u);
  for (int t : {0, 1})
    for (const char* key : {"prompt_ids", "n_reused", "ids", "text"})
      EXPECT_EQ(same[t][key], turns[t][key]) << key;
}

TEST_F(ChatCli, AFullContextDropsTheOldestExchangesAndATooLongTurnIsAnError) {
  std::string long_line;
  for (int i = 0; i < 80; ++i) long_line += "word" + std::to_string(i) + " ";
  const auto r =
      Chat("--json --temp 0 -n 8 -c 96 --system 'Be brief.'",
           "First question\nSecond question\n" + long_line + "\nThird question\nFourth question\n");
  EXPECT_EQ(r.exit_code, 1) << "a turn failed";
  const auto turns = JsonLines(r.out);
  ASSERT_EQ(turns.size(), 4u) << r.out << r.err;
  int dropped = 0;
  for (const json& t : turns) dropped += t["n_dropped"].get<int>();
  EXPECT_GT(dropped, 0) << r.out;
  EXPECT_NE(r.err.find("mobilellm: note: the context of 96 tokens was full: dropped the "),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("mobilellm: error: stdin line 3: this message needs "), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("more than the context of 96; it was not sent (shorten it or raise -c)\n"),
            std::string::npos)
      << r.err;
  // The turns after the error go on from the conversation before it.
  EXPECT_EQ(turns[2]["turn"], 3);
  EXPECT_GT(turns[2]["n_reused"].get<int>(), 0);

  // Every turn fits the context, its reply included.
  for (const json& t : turns)
    EXPECT_LE(t["n_reused"].get<size_t>() + t["prompt_ids"].size() + t["ids"].size(), 96u);
}

TEST_F(ChatCli, StopReasons) {
  // -n
  const auto n = Chat("--json --temp 0 -n 10", "Tell me\n");
  ASSERT_EQ(n.exit_code, 0) << n.err;
  const json first = JsonLines(n.out).at(0);
  ASSERT_EQ(first["stop_reason"], "max_tokens");
  ASSERT_EQ(first["ids"].size(), 10u);

  // --stop: the reply ends before the stop string, streamed or not, and never prints part of it.
  // The stop string: a later reply token's text (passed through a file to the shell).
  auto model = std::move(Model::Load(Model())).value();
  const std::string text = first["text"];
  std::string stop;
  for (size_t i = 3; i < first["ids"].size() && stop.empty(); ++i) {
    const std::string bytes = model->TokenBytes(first["ids"][i]);
    if (bytes.find_first_of(std::string("\n\0", 2)) == std::string::npos &&
        bytes.find_first_not_of(' ') != std::string::npos && text.find(bytes) != std::string::npos)
      stop = bytes;
  }
  ASSERT_FALSE(stop.empty()) << text;
  TempDir tmp;
  testing::WriteAll(tmp / "stop", stop);
  const std::string stop_flag = " --stop \"$(cat " + tmp / "stop" + ")\"";
  const std::string before = text.substr(0, text.find(stop));
  const auto s = Chat("--json --temp 0 -n 10" + stop_flag, "Tell me\n");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const json stopped = JsonLines(s.out).at(0);
  EXPECT_EQ(stopped["stop_reason"], "stop_string");
  EXPECT_EQ(stopped["text"], before);
  const auto streamed = Chat("--temp 0 -n 10" + stop_flag, "Tell me\n");
  ASSERT_EQ(streamed.exit_code, 0) << streamed.err;
  EXPECT_EQ(streamed.out, before + "\n");

  // EOS: the same model with the first reply token as its eos_token_id stops before it.
  TempDir dir;
  ASSERT_EQ(std::system(("cp -r " + testing::Hf(kCase) + " " + dir / "hf").c_str()), 0);
  json config = testing::ReadJson(dir / "hf/config.json");
  config["eos_token_id"] = first["ids"][0];
  testing::WriteAll(dir / "hf/config.json", config.dump());
  const auto c = RunCommand(testing::Convert() + " " + dir / "hf" + " -o " + dir / "eos.mlm" +
                            " -q --dtype f32 --chat-template " + Template("chatml.jinja"));
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const auto e = Chat("--json --temp 0 -n 10", "Tell me\n", dir / "eos.mlm");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const json eos = JsonLines(e.out).at(0);
  EXPECT_EQ(eos["stop_reason"], "eos");
  EXPECT_TRUE(eos["ids"].empty());
}

TEST_F(ChatCli, TheTemplatesEndOfTurnEndsAReply) {
  auto model = std::move(Model::Load(Model())).value();
  auto session = std::move(Session::Create(model, {})).value();
  auto chat = std::move(Chat::Create(*session)).value();
  // The tiny SentencePiece vocabulary has no <|im_end|> token: the text is a stop string.
  EXPECT_EQ(chat->end_of_turn_id(), -1);
  EXPECT_EQ(chat->end_of_turn_text(), "<|im_end|>");
  // A Zephyr-style template ends a turn with the control token </s>: an id, not a text.
  auto zephyr = ChatTemplate::Parse(
      "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}</s>\n{% endfor %}"
      "{% if add_generation_prompt %}<|assistant|>\n{% endif %}");
  ASSERT_TRUE(zephyr.ok()) << zephyr.status().message();
  auto chat2 = std::move(Chat::Create(*session, {}, std::move(zephyr).value())).value();
  EXPECT_EQ(chat2->end_of_turn_id(), model->tokenizer().TokenId("</s>"));
  EXPECT_EQ(chat2->end_of_turn_text(), "");

  // An end-of-turn id ends the reply as EOS does (GenerateOptions::stop_ids), not included.
  GenerateOptions go;
  go.max_tokens = 6;
  go.sampling.temperature = 0;
  const std::vector<int> prompt = model->Tokenize("Hello");
  auto all = Generate(*session, prompt, go, nullptr);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->ids.size(), 6u);
  go.stop_ids = {all->ids[3]};
  session->Reset();
  auto cut = Generate(*session, prompt, go, nullptr);
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->stop_reason, StopReason::kEos);
  const size_t first_stop =
      size_t(std::find(all->ids.begin(), all->ids.end(), all->ids[3]) - all->ids.begin());
  EXPECT_EQ(cut->ids, std::vector<int>(all->ids.begin(), all->ids.begin() + first_stop));
}

TEST_F(ChatCli, UndoResetSaveAndLoad) {
  TempDir dir;
  const std::string save = dir / "s.session";
  const auto r =
      Chat("--json --temp 0 -n 6 -c 512",
           "One\nTwo\n/undo\nTwo\n/save " + save + "\n/reset\nOne\n/load " + save + "\nThree\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto t = JsonLines(r.out);
  ASSERT_EQ(t.size(), 5u) << r.out;
  // After /undo, "Two" again renders what turn 2 rendered: all of it is still cached but its last
  // id (evaluated again for the logits), and the reply is the same.
  EXPECT_EQ(t[2]["ids"], t[1]["ids"]);
  EXPECT_EQ(t[2]["n_reused"].get<size_t>(),
            t[1]["n_reused"].get<size_t>() + t[1]["prompt_ids"].size() - 1);
  EXPECT_EQ(t[2]["prompt_ids"].size(), 1u);
  // After /reset, "One" is turn 1 again: all of it is still in the cache but its last id.
  EXPECT_EQ(t[3]["ids"], t[0]["ids"]);
  EXPECT_EQ(t[3]["prompt_ids"].size(), 1u);
  // After /load, "Three" continues the saved conversation, whose ids the file holds.
  EXPECT_EQ(t[4]["n_reused"].get<size_t>(),
            t[2]["n_reused"].get<size_t>() + t[2]["prompt_ids"].size() + t[2]["ids"].size());
  EXPECT_NE(r.err.find("[saved " + save + ": 4 messages, "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[loaded " + save + ": 4 messages, "), std::string::npos) << r.err;
  EXPECT_TRUE(testing::FileExists(save + ".json"));

  // A session file of another model is refused with one line, and the chat goes on.
  testing::ConvertCase("gqa2-untied-st-f32", "f32", dir / "other.mlm");
  const auto other = RunCommand("cp " + save + ".json " + dir / "o.session.json");
  ASSERT_EQ(other.exit_code, 0);
  auto m = std::move(Model::Load(dir / "other.mlm")).value();
  auto s = std::move(Session::Create(m, {})).value();
  ASSERT_TRUE(s->Evaluate({1, 2, 3}).ok());
  ASSERT_TRUE(s->Save(dir / "o.session").ok());
  const auto bad = Chat("--json --temp 0 -n 6", "/load " + dir / "o.session" + "\nOne\n");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("mobilellm: error: stdin line 1: " + dir / "o.session" +
                         ": saved for a different model"),
            std::string::npos)
      << bad.err;
  EXPECT_EQ(JsonLines(bad.out).size(), 1u);
}

TEST_F(ChatCli, Errors) {
  // A model without a template points to generate and --chat-template, before any turn.
  TempDir dir;
  testing::ConvertCase(kCase, "f32", dir / "plain.mlm");
  const auto none = Chat("--json", "Hi\n", dir / "plain.mlm");
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_EQ(none.out, "");
  EXPECT_EQ(none.err, "mobilellm: error: " + dir / "plain.mlm" +
                          ": this model has no chat template; use `mobilellm generate` with a raw "
                          "prompt, or add one with `mobilellm-convert --chat-template FILE`\n");
  // --chat-template gives it one.
  const auto given = Chat("--json --temp 0 -n 4 --chat-template " + Template("chatml.jinja"),
                          "Hi\n", dir / "plain.mlm");
  EXPECT_EQ(given.exit_code, 0) << given.err;
  EXPECT_EQ(JsonLines(given.out).size(), 1u);
  // An unsupported template is refused with its line and construct.
  testing::WriteAll(dir / "bad.jinja", "{% for m in messages %}\n{{ m.content | wordcount }}\n");
  const auto bad = Chat("--chat-template " + dir / "bad.jinja", "Hi\n");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_EQ(bad.out, "");
  EXPECT_EQ(bad.err, "mobilellm: error: " + dir / "bad.jinja" +
                         ": chat template line 2: unsupported construct: filter 'wordcount'\n");
  // Usage errors exit 2.
  const auto flag = Chat("--no-such-flag", "Hi\n");
  EXPECT_EQ(flag.exit_code, 2);
  EXPECT_EQ(flag.out, "");
  const auto unknown = Chat("--json", "/frobnicate\nHi\n");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("stdin line 1: unknown command '/frobnicate'"), std::string::npos);
  EXPECT_EQ(JsonLines(unknown.out).size(), 1u);
  const auto not_json = Chat("--json", "{\"role\": 1}\n");
  EXPECT_EQ(not_json.exit_code, 1);
  EXPECT_EQ(not_json.err,
            "mobilellm: error: stdin line 1: expected a JSON object with string \"role\" and "
            "\"content\"\n");
}

TEST_F(ChatCli, CtrlCOnATerminalStopsTheReplyAndKeepsTheConversation) {
  if (testing::Emulated()) GTEST_SKIP() << "a pty under an emulator: signals take their own path";
  const auto r = RunCommand("python3 " + std::string(MOBILELLM_SOURCE_DIR) + "/tests/chat_pty.py " +
                            testing::Mobilellm() + " " + Model());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

}  // namespace
}  // namespace mobilellm

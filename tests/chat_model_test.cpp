// A model's chat template end to end: the converter copies it from tokenizer_config.json (or
// --chat-template FILE) into the .mlm and refuses one it cannot render; `info` shows it;
// Model::ApplyChatTemplate renders it; a model without one says where to go instead.
#include <string>

#include "mobilellm/mobilellm.h"
#include "test_util.h"

namespace mobilellm {
namespace {

using testing::ReadAll;
using testing::RunCommand;

const char* const kCase = "gqa2-untied-st-f32";

std::string Template(const std::string& name) {
  return std::string(MOBILELLM_SOURCE_DIR) + "/tests/testdata/templates/" + name;
}

// A copy of the fixture checkpoint with this tokenizer_config.json (none if empty).
std::string CheckpointWith(const testing::TempDir& dir, const nlohmann::json& tokenizer_config) {
  const std::string hf = dir / "hf";
  EXPECT_EQ(
      std::system(("cp -r '" + testing::FixturesDir() + "/" + kCase + "/hf' '" + hf + "'").c_str()),
      0);
  if (!tokenizer_config.is_null()) {
    testing::WriteAll(hf + "/tokenizer_config.json", tokenizer_config.dump());
  }
  return hf;
}

const std::vector<ChatMessage> kChat = {
    {"system", "Be brief."}, {"user", "Hi {{ x }}"}, {"assistant", "Hello."}, {"user", "Bye"}};

TEST(ChatModel, ConverterCopiesTheDefaultTemplateAndTokens) {
  testing::TempDir dir;
  const std::string source = ReadAll(Template("llama3.jinja"));
  const nlohmann::json config = {
      {"bos_token", {{"content", "<s>"}, {"lstrip", false}, {"__type", "AddedToken"}}},
      {"eos_token", "</s>"},
      {"chat_template",
       {{{"name", "tool_use"}, {"template", "{% macro unsupported() %}{% endmacro %}"}},
        {{"name", "default"}, {"template", source}}}}};
  const std::string hf = CheckpointWith(dir, config);
  const auto r = RunCommand(testing::Convert() + " " + hf + " -o " + dir / "m.mlm" + " -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;

  auto model = Model::Load(dir / "m.mlm");
  ASSERT_TRUE(model.ok()) << model.status().message();
  ASSERT_NE((*model)->chat_template(), nullptr);
  EXPECT_EQ((*model)->chat_template()->source(), source);
  EXPECT_EQ((*model)->chat_tokens().bos_token, std::optional<std::string>("<s>"));
  EXPECT_EQ((*model)->chat_tokens().eos_token, std::optional<std::string>("</s>"));
  for (bool agp : {false, true}) {
    const auto text = (*model)->ApplyChatTemplate(kChat, agp);
    ASSERT_TRUE(text.ok()) << text.status().message();
    EXPECT_EQ(*text, *ChatTemplate::Parse(source)->Render(kChat, agp, (*model)->chat_tokens()));
    EXPECT_EQ(
        text->rfind("<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>", 0), 0u)
        << *text;
  }

  const auto info = RunCommand(testing::Mobilellm() + " info " + dir / "m.mlm");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("chat template: " + std::to_string(source.size()) +
                          " bytes, first line: {% set loop_messages = messages %}"),
            std::string::npos)
      << info.out;
  EXPECT_NE(info.out.find("bos_token \"<s>\", eos_token \"</s>\""), std::string::npos) << info.out;

  // Re-encoding an .mlm keeps its template.
  const auto q = RunCommand(testing::Convert() + " " + dir / "m.mlm" + " --dtype q8_0 -o " +
                            dir / "q.mlm" + " -q");
  ASSERT_EQ(q.exit_code, 0) << q.err;
  auto requantized = Model::Load(dir / "q.mlm");
  ASSERT_TRUE(requantized.ok());
  EXPECT_EQ(*(*requantized)->ApplyChatTemplate(kChat, true),
            *(*model)->ApplyChatTemplate(kChat, true));
}

TEST(ChatModel, ChatTemplateFileOverridesAndUnsupportedOnesAreRefused) {
  testing::TempDir dir;
  const std::string hf = CheckpointWith(dir, {{"chat_template", "{{ messages[0].content }}"}});
  const auto r = RunCommand(testing::Convert() + " " + hf + " -o " + dir / "m.mlm" +
                            " -q --chat-template " + Template("chatml.jinja"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto model = Model::Load(dir / "m.mlm");
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(*(*model)->ApplyChatTemplate({{"user", "Hi"}}, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");

  testing::WriteAll(dir / "bad.jinja", "{% for m in messages %}\n{{ m.content | wordcount }}\n");
  const auto bad = RunCommand(testing::Convert() + " " + hf + " -o " + dir / "bad.mlm" +
                              " --chat-template " + dir / "bad.jinja");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_EQ(bad.err, "mobilellm-convert: error: " + dir / "bad.jinja" +
                         ": chat template line 2: unsupported construct: filter 'wordcount'\n");
  EXPECT_FALSE(testing::FileExists(dir / "bad.mlm"));

  testing::TempDir dir2;
  const std::string hf_macro =
      CheckpointWith(dir2, {{"chat_template", "x\n{% macro f() %}{% endmacro %}"}});
  const auto macro = RunCommand(testing::Convert() + " " + hf_macro + " -o " + dir2 / "m.mlm");
  EXPECT_EQ(macro.exit_code, 1);
  EXPECT_NE(macro.err.find("tokenizer_config.json: chat template line 2: unsupported construct "
                           "'{% macro %}'"),
            std::string::npos)
      << macro.err;
}

TEST(ChatModel, RandomWeightsTakeATemplateToo) {
  if (testing::Emulated()) GTEST_SKIP() << "125M random weights take minutes under an emulator";
  testing::TempDir dir;
  const auto r = RunCommand(testing::Convert() + " --random 125m --dtype q4_0 -q -o " +
                            dir / "r.mlm" + " --tokenizer " + testing::FixturesDir() +
                            "/tiny.model" + " --chat-template " + Template("chatml.jinja"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto model = Model::Load(dir / "r.mlm");
  ASSERT_TRUE(model.ok()) << model.status().message();
  EXPECT_EQ(*(*model)->ApplyChatTemplate({{"user", "Hi"}}, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // No tokenizer_config.json: bos_token and eos_token are the tokenizer's special tokens at the
  // preset's bos and eos ids.
  EXPECT_EQ((*model)->chat_tokens().bos_token, std::optional<std::string>("<s>"));
  EXPECT_EQ((*model)->chat_tokens().eos_token, std::optional<std::string>("</s>"));
}

TEST(ChatModel, AModelWithoutATemplatePointsToGenerate) {
  testing::TempDir dir;
  const std::string hf = CheckpointWith(dir, nullptr);
  ASSERT_EQ(RunCommand(testing::Convert() + " " + hf + " -o " + dir / "m.mlm" + " -q").exit_code,
            0);
  auto model = Model::Load(dir / "m.mlm");
  ASSERT_TRUE(model.ok()) << model.status().message();
  EXPECT_EQ((*model)->chat_template(), nullptr);
  const auto text = (*model)->ApplyChatTemplate({{"user", "Hi"}}, true);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().message(),
            dir / "m.mlm" +
                ": this model has no chat template; use `mobilellm generate` with a raw prompt, "
                "or add one with `mobilellm-convert --chat-template FILE`");
  const auto info = RunCommand(testing::Mobilellm() + " info " + dir / "m.mlm");
  EXPECT_NE(info.out.find("chat template: none"), std::string::npos) << info.out;
}

}  // namespace
}  // namespace mobilellm

// Chat templates: the interpreter's refusals and limits, a few renders checked by hand, and
// parity with Jinja2 (Debian's python3-jinja2, configured as transformers' apply_chat_template)
// byte for byte on real model templates and on one snippet per supported construct.
#include <dirent.h>

#include <algorithm>
#include <string>
#include <vector>

#include "mobilellm/chat_template.h"
#include "test_util.h"

namespace mobilellm {
namespace {

using testing::ReadAll;

std::string TemplatesDir() {
  return std::string(MOBILELLM_SOURCE_DIR) + "/tests/testdata/templates";
}

ChatSpecialTokens Tokens() {
  ChatSpecialTokens t;
  t.bos_token = "<s>";
  t.eos_token = "</s>";
  return t;
}

std::string ParseError(const std::string& source) {
  const auto t = ChatTemplate::Parse(source);
  return t.ok() ? "(parsed)" : t.status().message();
}

std::string RenderError(const std::string& source, const RenderLimits& limits = {}) {
  const auto t = ChatTemplate::Parse(source);
  if (!t.ok()) return "(parse error) " + t.status().message();
  const auto r = t->Render({{"user", "hi"}}, true, Tokens(), limits);
  return r.ok() ? "(rendered)" : r.status().message();
}

std::string Render(const std::string& source, const std::vector<ChatMessage>& messages,
                   bool add_generation_prompt = true) {
  const auto t = ChatTemplate::Parse(source);
  if (!t.ok()) return "(parse error) " + t.status().message();
  const auto r = t->Render(messages, add_generation_prompt, Tokens());
  return r.ok() ? *r : "(render error) " + r.status().message();
}

TEST(ChatTemplate, Llama3ByHand) {
  const std::string source = ReadAll(TemplatesDir() + "/llama3.jinja");
  ASSERT_FALSE(source.empty());
  EXPECT_EQ(Render(source, {{"system", "Be brief."}, {"user", "  Hi!\n"}}),
            "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(Render(source, {{"user", "Hi"}}, false),
            "<s><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplate, ContentIsNeverEvaluated) {
  EXPECT_EQ(Render("{{ messages[0].content }}", {{"user", "{{ 1 + 1 }} {% if %} {# x #}"}}),
            "{{ 1 + 1 }} {% if %} {# x #}");
}

TEST(ChatTemplate, WhitespaceRules) {
  // trim_blocks drops the newline after a tag; lstrip_blocks the indentation before one.
  EXPECT_EQ(Render("  {% if true %}\n  x\n  {% endif %}\n  {{ 'y' }}\n", {}), "  x\n  y");
  EXPECT_EQ(Render("a  {{- 'b' -}}  c {%+ if true %}d{% endif +%}\ne", {}), "abc d\ne");
}

TEST(ChatTemplate, RefusesUnsupportedConstructsWithTheirLine) {
  EXPECT_EQ(ParseError("x\n\n{% macro f() %}{% endmacro %}"),
            "chat template line 3: unsupported construct '{% macro %}'");
  EXPECT_EQ(ParseError("{% include 'x.jinja' %}"),
            "chat template line 1: unsupported construct '{% include %}'");
  EXPECT_EQ(ParseError("\n{{ x | wordcount }}"),
            "chat template line 2: unsupported construct: filter 'wordcount'");
  EXPECT_EQ(ParseError("{{ x is sameas y }}"),
            "chat template line 1: unsupported construct: test 'is sameas'");
  EXPECT_EQ(ParseError("{{ x.format(1) }}"),
            "chat template line 1: unsupported construct: method '.format()'");
  EXPECT_EQ(ParseError("{{ strftime_now('%Y') }}"),
            "chat template line 1: unsupported construct: function 'strftime_now()'");
  EXPECT_EQ(ParseError("{{ 1.5 }}"), "chat template line 1: unsupported construct: float literal");
  EXPECT_EQ(ParseError("{{ 4 / 2 }}"),
            "chat template line 1: unsupported construct: '/' (float division; use '//')");
  EXPECT_EQ(ParseError("{% set x %}a{% endset %}"),
            "chat template line 1: unsupported construct '{% set %}...{% endset %}' (a block set)");
  EXPECT_EQ(ParseError("{{ 1, 2 }}"),
            "chat template line 1: unsupported construct: a tuple in {{ }}");
  EXPECT_EQ(ParseError("{% frobnicate %}"),
            "chat template line 1: unknown or misplaced tag '{% frobnicate %}'");
}

TEST(ChatTemplate, RefusesMalformedTemplates) {
  EXPECT_EQ(ParseError("{% if x %}"),
            "chat template line 1: unexpected end of template: expected {% endif %}");
  EXPECT_EQ(ParseError("a\n{% endfor %}"),
            "chat template line 2: unknown or misplaced tag '{% endfor %}'");
  EXPECT_EQ(ParseError("{{ x "), "chat template line 1: unclosed tag: expected '}}'");
  EXPECT_EQ(ParseError("{{ 'abc }}"), "chat template line 1: unterminated string literal");
  EXPECT_EQ(ParseError("{# x"), "chat template line 1: unclosed comment {# ... #}");
  EXPECT_EQ(ParseError("{% break %}"), "chat template line 1: '{% break %}' outside a for loop");
  EXPECT_EQ(ParseError("{{ (1 }}"), "chat template line 1: unexpected '}'");
  EXPECT_EQ(ParseError("{{ 1) }}"), "chat template line 1: unexpected ')'");
  EXPECT_EQ(ParseError("{{ x is defined(1) }}"),
            "chat template line 1: test 'is defined' takes no argument");
  EXPECT_EQ(ParseError("{{ 99999999999999999999 }}"),
            "chat template line 1: integer literal too large");
  EXPECT_EQ(ParseError("{{ }}"), "chat template line 1: expected an expression, found '}}'");
}

TEST(ChatTemplate, RuntimeErrorsNameTheLine) {
  EXPECT_EQ(RenderError("\n{{ raise_exception('Roles must alternate') }}"),
            "chat template line 2: Roles must alternate");
  EXPECT_EQ(RenderError("{{ foo.bar }}"), "chat template line 1: 'foo' is undefined");
  EXPECT_EQ(RenderError("{{ foo + 1 }}"), "chat template line 1: 'foo' is undefined");
  EXPECT_EQ(RenderError("{{ 1 // 0 }}"),
            "chat template line 1: integer division or modulo by zero");
  EXPECT_EQ(RenderError("{% set x = 1 %}{% set x.y = 2 %}"),
            "chat template line 1: cannot assign attribute on non-namespace object 'x'");
  EXPECT_EQ(RenderError("{{ messages|tojson }}{{ foo|tojson }}"),
            "chat template line 1: Object of type Undefined is not JSON serializable");
  EXPECT_EQ(RenderError("{{ 9223372036854775807 + 1 }}"),
            "chat template line 1: integer overflow (integers are 64-bit here)");
}

TEST(ChatTemplate, HostileTemplatesHitALimit) {
  RenderLimits small;
  small.max_steps = 1'000'000;
  small.max_output_bytes = 1 << 20;
  small.max_work_bytes = 64 << 20;
  RenderLimits few_steps;
  few_steps.max_steps = 100'000;
  EXPECT_NE(RenderError("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                        "{% endfor %}",
                        few_steps)
                .find("steps (RenderLimits::max_steps)"),
            std::string::npos);
  EXPECT_NE(RenderError("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", small)
                .find("output longer than"),
            std::string::npos);
  EXPECT_NE(RenderError("{% set ns = namespace(s='x') %}{% for i in range(64) %}"
                        "{% set ns.s = ns.s + ns.s %}{% endfor %}",
                        small)
                .find("RenderLimits::max_output_bytes"),
            std::string::npos);
  EXPECT_NE(RenderError("{{ 'x' * 9223372036854775807 }}", small).find("larger than"),
            std::string::npos);
  EXPECT_NE(RenderError("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}"
                        "{% set ns.l = [ns.l] %}{% endfor %}")
                .find("nested deeper than 64"),
            std::string::npos);
  EXPECT_EQ(RenderError("{% set ns = namespace() %}{% set ns.me = [ns] %}"),
            "chat template line 1: unsupported: storing a namespace inside a namespace");
  EXPECT_NE(RenderError("{{ range(1000000)|length }}").find("range too big"), std::string::npos);
  EXPECT_NE(ParseError("{{ " + std::string(10000, '(') + "1" + std::string(10000, ')') + " }}")
                .find("nesting deeper than 64 levels"),
            std::string::npos);
  std::string chain = "{{ 1";
  for (int k = 0; k < 100000; ++k) chain += " + 1";
  EXPECT_NE(ParseError(chain + " }}").find("expression deeper than 256 levels"), std::string::npos);
  std::string blocks;
  for (int k = 0; k < 1000; ++k) blocks += "{% if true %}";
  EXPECT_NE(ParseError(blocks).find("nesting deeper than 64 levels"), std::string::npos);
  EXPECT_NE(ParseError(std::string(100000, '-') + "{{ " + std::string(100000, '-') + "1 }}")
                .find("nesting deeper"),
            std::string::npos);
}

// ---- parity with Jinja2 -----------------------------------------------------------------------

struct Case {
  std::string name;
  std::string source;
  std::vector<ChatMessage> messages;
  bool add_generation_prompt;
};

std::vector<std::vector<ChatMessage>> Conversations() {
  return {
      {{"user", "Hello!"}},
      {{"system", "You are a helpful assistant."}, {"user", "What is 2+2?"}},
      {{"system", ""},
       {"user", "Hi"},
       {"assistant", "Hello! How can I help?"},
       {"user", "Tell me a joke."}},
      {{"user", "Render {{ messages }} and {% if true %}x{% endif %} {# not a comment #}"},
       {"assistant", "  {%- raw -%} padded reply \n"},
       {"user", "ünïcödé ✓ 日本語 \"quotes\" 'single' \\ back\tslash\x01"}},
      {{"system", "Think step by step."},
       {"user", "What is 2+2?"},
       {"assistant", "<think>\n2 plus 2 is 4.\n</think>\n\nThe answer is 4."},
       {"user", "And 3+3?"},
       {"assistant", "<think>easy</think>6"}},
      {{"user", "one"},
       {"assistant", "two"},
       {"user", "three"},
       {"assistant", "four"},
       {"user", "five"}},
      {{"user", "first"}, {"user", "second in a row"}},
  };
}

// One template per construct the interpreter supports, each checked against Jinja2.
const char* const kSnippets[] = {
    R"J({{ messages|length }} {{ messages[0].role|upper }} {{ messages[-1]['content']|lower }})J",
    R"J({% for m in messages %}{{ loop.index0 }}{{ loop.index }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %})J",
    R"J({% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}>{{ loop.nextitem.role if not loop.last }};{% endfor %})J",
    R"J({% for x in [] %}a{% else %}empty{% endfor %}{% for x in messages %}{% else %}never{% endfor %})J",
    R"J({% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}{{ m.role }}{% endfor %})J",
    R"J({% for m in messages %}{% if m.role == 'user' %}{% continue %}{% endif %}{{ m.role }},{% endfor %})J",
    R"J({% set x = 0 %}{% for m in messages %}[{{ x }}]{% set x = loop.index %}({{ x }}){% endfor %}{{ x }})J",
    R"J({% for m in messages %}[{{ y }}]{% set y = m.role %}{% endfor %}{% if true %}{% set z = 3 %}{% endif %}{{ z }})J",
    R"J({{ foo }}|{{ foo is defined }}|{{ foo|length }}|{{ foo ~ 'a' }}|{{ foo|default('dflt') }}|{{ ''|default('x', true) }}|{{ none|default('x') }}|{{ foo|d(3) }})J",
    R"J({{ [1,'a',None,True,{'k':'v\n'}] }}{{ messages[0] }}{{ {'a': {'b': [1, {'c': 2}]}} }})J",
    R"J({{ 'ab'[5] }}|{{ [1][3] }}|{{ {'a':1}.b }}|{{ messages[10] }}|{{ messages[-1].role }})J",
    R"J({{ 7 // -2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1 == true }} {{ 3 - 5 * 2 }} {{ (3 - 5) * 2 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }})J",
    R"J({{ 'a' if false }}|{{ 'b' if true else 'c' }}|{{ 'x' if none else 'y' if 0 else 'z' }})J",
    "  {% if true %}\n  x\n  {% endif %}\n  {{ 'y' }}\n\t{% for m in messages %}\n\t\t{{ m.role "
    "}}\n\t{% endfor %}\n",
    "{% for m in messages %}\n  {%- if m.role == 'user' %}\n    U: {{ m.content }}\n  {%- else "
    "%}\n    O: {{ m.content }}\n  {%- endif %}\n{% endfor %}\n",
    "a  {#- comment -#}  b\n  {# lstripped comment #}\nc{{- ' d ' -}}  e {%+ if true %}f{% endif "
    "+%}\ng \n {%- if true -%} \n h {{ 'i' }} {% endif %}\n",
    R"J({% raw %}{{ not rendered }}{% endraw %}x{%- raw -%}  {% if %}  {%- endraw %}y {% raw %}
  z{% endraw %})J",
    R"J({{ 'é'|upper }} {{ 'aé'[1] }} {{ 'aé'|length }} {{ 'ÀÉÎ'|lower }} {{ 'straße'.upper() }} {{ 'ΑΒΓ δε'.lower() }} {{ 'привет мир'.title() }})J",
    R"J({% for k, v in {'a':1,'b':2}.items() %}{{k}}={{v}};{% endfor %}{{ {'a':1}.keys()|list }}{{ {'a':1}.values()|list }}{{ {'a':1}.get('a') }}{{ {'a':1}.get('b') }}{{ {'a':1}.get('b', 7) }})J",
    R"J({{ 'a b  c'.split() }}{{ 'a,b,,c'.split(',') }}{{ ' x '.strip() }}{{ 'a,b,c'.split(',', 1) }}{{ '  a  b  '.split(None, 1) }}{{ ''.split() }}{{ ''.split(',') }})J",
    R"J({{ 1 < 2 < 3 }}{{ 'b' in 'abc' }}{{ 'x' not in ['x'] }}{{ 'role' in messages[0] }}{{ 3 > 2 > 5 }}{{ 2 >= 2 }}{{ 'a' != 'a' }})J",
    R"J({{ none }}{{ None }}{{ true }}{{ False }}{{ -0 }})J",
    R"J({% set a = [1,2,3,4,5] %}{{ a[::-1] }}{{ a[-2:] }}{{ 'hello'[1:-1] }}{{ a[1:4:2] }}{{ a[10:] }}{{ a[:-10] }}{{ 'héllo'[::-2] }}{{ a[-100:100] }}{{ a[3:1:-1] }}{{ messages[1:]|length }})J",
    R"J({{ 'x' * 3 }}{{ [1]+[2] }}{{ 'ab' + 'cd' }}{{ 1 ~ 2 }}{{ [1] * 2 }}{{ 3 * 'y' }}{{ 'z' * -1 }})J",
    R"J({{ messages|tojson }})J",
    R"J({{ messages[0]|tojson(indent=2) }}{{ [[], {}, [1, [2]]]|tojson(indent=1) }}{{ {'a': none, 'b': true, 'c': "q\"\\\t\u0001é"}|tojson }}{{ 'x'|tojson }})J",
    R"J({{ ['a','b','c']|join(', ') }}|{{ 'abc'|join('-') }}|{{ [1,2]|join }}|{{ messages|join('/') }})J",
    R"J({{ 'aaa'|replace('a', 'b') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'abc'.replace('', '-') }}|{{ 'abc'|replace('', '-', 2) }}|{{ 'héé'.replace('é', 'e') }})J",
    R"J({{ '  x  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'xxhixx'.lstrip('x') }}|{{ 'xxhixx'.rstrip('x') }}|{{ '\t\n y \u3000'|trim }}|{{ messages|trim }})J",
    R"J({{ 'Hello'.startswith('He') }}{{ 'Hello'.endswith('lo') }}{{ 'Hello'.startswith(['x','H']) }}{{ 'Hello'.endswith('') }}{{ 'Hi'.startswith('Hello') }})J",
    R"J({{ 'hello WORLD'.capitalize() }}|{{ 'hELLO'|capitalize }}|{{ "it's o'neil".title() }}|{{ 'a1b2 c3'.title() }}|{{ 'ß'.title() }})J",
    R"J({{ 1 is number }}{{ true is number }}{{ 1 is integer }}{{ true is integer }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is mapping }}{{ none is none }}{{ x is undefined }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}{{ 'a' is eq 'a' }}{{ 1 is ne 2 }}{{ true is boolean }}{{ false is false }}{{ [] is iterable }}{{ 'a' is sequence }}{{ 1 is not string }}{{ 1 is equalto(1) }})J",
    R"J({{ messages|first }}|{{ messages|last|tojson }}|{{ 'abc'|first }}{{ 'abc'|last }}|{{ []|first }}|{{ messages[0]|list }}|{{ messages[0]|items|list }}|{{ 3|string + 'x' }}|{{ messages|count }})J",
    R"J({{ [3,1,2] == [3,1,2] }}{{ {'a':1,'b':2} == {'b':2,'a':1} }}{{ 'a' < 'b' }}{{ [1,2] < [1,3] }}{{ 'B' > 'a' }}{{ none == none }}{{ 0 == false }}{{ 'é' > 'z' }})J",
    R"J({{ '' or 'x' }}|{{ 'a' and 'b' }}|{{ 0 or [] }}|{{ not '' }}|{{ not messages }}|{{ none and 1 }}|{{ not not 1 }})J",
    R"J({% set ns = namespace(n=0, items=[]) %}{% for m in messages %}{% set ns.n = ns.n + m.content|length %}{% set ns.items = ns.items + [m.role] %}{% endfor %}{{ ns.n }} {{ ns.items }} {{ ns.missing is defined }})J",
    R"J({% set a, b = [1, 2] %}{{ a }}{{ b }}{% for x, y in [[1, 2], [3, 4]] %}{{ x + y }}{% endfor %})J",
    R"J({% for c in 'héllo' %}{{ c }}.{% endfor %}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %})J",
    R"J({% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}:{{ m.role }} {% endfor %})J",
    R"J({% for i in range(3) %}{{ i }}{% endfor %}{{ range(1, 10, 3)|list }}{{ range(5, 0, -2)|list }}{{ range(0)|list }})J",
    R"J({{ "it's" }}{{ 'say "hi"' }}{{ ['it\'s', 'a"b', 'both\'"'] }}{{ ['\u00e9\x01\n'] }}{{ 'a' 'b' "c" }})J",
    R"J({{ messages[0]['role'] }}{{ messages.0.role }}{{ messages[0]['nope'] is defined }}{{ messages[0].nope|default('d') }})J",
    R"J({{ -3 }} {{ -(2 + 3) }} {{ +4 }} {{ 10 % 3 }} {{ -10 // 3 }} {{ 10 % -3 }})J",
    R"J({{ 'abc' ~ none ~ 1 ~ true ~ [1] ~ foo }})J",
    R"J({% if messages %}{% if messages|length > 3 %}long{% elif messages|length > 1 %}medium{% else %}short{% endif %}{% endif %})J",
    R"J({{ raise_exception('custom: ' ~ messages|length) }})J",
    R"J({{ undefined_thing + 'a' }})J",
    R"J({{ foo.bar }})J",
    R"J({{ x.y is defined }})J",
    R"J({{ messages[0].content.strip().split(' ')|join('_') }}{{ 'abc' in messages[0].content }}{{ messages[0].content.startswith('Hi') }})J",
    R"J({% set sys = messages[0].content if messages[0].role == 'system' else '' %}[{{ sys }}]{% for m in messages[1:] %}{{ m.role[0] }}{% endfor %})J",
    R"J({{ 'a\nb' }}{{ '\x41\101\u0042' }}{{ 'line \
cont' }}{{ '\q' }})J",
    R"J({{ 9223372036854775807 }}{{ 1_000 }}{{ 0 }}{{ 00 }})J",
    R"J({{ messages[0].role.upper() }}{{ messages[0]['content'][:5] }}{{ messages|length * 2 }})J",
    R"J({% set content = messages[-1].content %}{% if '</think>' in content %}{{ content.split('</think>')[-1].strip() }}{% else %}{{ content }}{% endif %})J",
    R"J({% generation %}{{ messages[0].role }}{% endgeneration %})J",
    R"J({{ bos_token }}{{ eos_token }}{{ bos_token + eos_token|length }})J",
    R"J({{ add_generation_prompt }}{{ add_generation_prompt is defined }}{{ add_generation_prompt is true }})J",
    R"J({{ 1 in [1, 2] }}{{ 'a' in {'a': 1} }}{{ 3 in messages }}{{ 'x' in foo }})J",
    R"J({{ 'ab' < 1 }})J",
    R"J({{ 1 + 'a' }})J",
    R"J({{ messages[0].content.split('') }})J",
};

std::vector<Case> ParityCases() {
  std::vector<Case> cases;
  std::vector<std::string> files;
  if (DIR* d = ::opendir(TemplatesDir().c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() > 6 && name.substr(name.size() - 6) == ".jinja") files.push_back(name);
    }
    ::closedir(d);
  }
  std::sort(files.begin(), files.end());
  const auto conversations = Conversations();
  for (const std::string& f : files) {
    const std::string source = ReadAll(TemplatesDir() + "/" + f);
    for (size_t c = 0; c < conversations.size(); ++c) {
      for (bool agp : {false, true}) {
        cases.push_back({f + " conversation " + std::to_string(c) + (agp ? " +gen" : ""), source,
                         conversations[c], agp});
      }
    }
  }
  for (size_t s = 0; s < std::size(kSnippets); ++s) {
    for (size_t c : {0, 2, 3}) {
      cases.push_back({"snippet " + std::to_string(s) + " conversation " + std::to_string(c),
                       kSnippets[s], conversations[c], true});
    }
  }
  return cases;
}

TEST(ChatTemplateParity, MatchesJinja2ByteForByte) {
  if (std::system("/usr/bin/python3 -c 'import jinja2' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3-jinja2 is not installed (tools/install-deps.sh --test installs it)";
  }
  const std::vector<Case> cases = ParityCases();
  ASSERT_GT(cases.size(), 200u);
  nlohmann::ordered_json input = nlohmann::ordered_json::array();  // keys in order
  for (const Case& c : cases) {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    for (const ChatMessage& m : c.messages) {
      messages.push_back({{"role", m.role}, {"content", m.content}});
    }
    input.push_back({{"template", c.source},
                     {"messages", messages},
                     {"add_generation_prompt", c.add_generation_prompt},
                     {"bos_token", "<s>"},
                     {"eos_token", "</s>"}});
  }
  testing::TempDir tmp;
  testing::WriteAll(tmp / "cases.json", input.dump());
  const auto r = testing::RunCommand("/usr/bin/python3 " + std::string(MOBILELLM_SOURCE_DIR) +
                                     "/tests/chat_template_oracle.py " + (tmp / "cases.json") +
                                     " " + (tmp / "out.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json expected = testing::ReadJson(tmp / "out.json");
  ASSERT_EQ(expected.size(), cases.size());
  int texts = 0, errors = 0;
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    const nlohmann::json& want = expected[k];
    const auto t = ChatTemplate::Parse(c.source);
    ASSERT_TRUE(t.ok()) << c.name << ": " << t.status().message();
    const auto got = t->Render(c.messages, c.add_generation_prompt, Tokens());
    if (want.contains("text")) {
      ASSERT_TRUE(got.ok()) << c.name << ": jinja2 rendered " << want["text"].dump()
                            << " but we failed: " << got.status().message() << "\n"
                            << c.source;
      EXPECT_EQ(*got, want["text"].get<std::string>()) << c.name << "\n" << c.source;
      ++texts;
    } else {
      EXPECT_FALSE(got.ok()) << c.name << ": jinja2 failed (" << want["error"]
                             << ") but we rendered " << nlohmann::json(*got).dump() << "\n"
                             << c.source;
      if (!got.ok() && want["raised"].get<bool>()) {
        const std::string message = want["error"].get<std::string>();
        const std::string& ours = got.status().message();
        EXPECT_EQ(ours.substr(ours.size() - std::min(ours.size(), message.size())), message)
            << c.name;
      }
      ++errors;
    }
  }
  std::printf("[ parity ] %zu cases: %d byte-equal renders, %d errors on both sides\n",
              cases.size(), texts, errors);
}

}  // namespace
}  // namespace mobilellm

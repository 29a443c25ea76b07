// mobilellm: the command-line front end. A thin client of include/mobilellm/mobilellm.h.
//
// Exit codes: 0 success, 1 runtime error (one line on stderr), 2 usage error.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>

#include "bench.h"
#include "chat.h"
#include "common.h"
#include "mobilellm/memory.h"
#include "mobilellm/mobilellm.h"
#include "progress.h"
#include "threads.h"

#ifndef MOBILELLM_SOURCE_DIR
#define MOBILELLM_SOURCE_DIR "."
#endif

namespace mobilellm::cli {

std::atomic<bool> g_cancel{false};

int Fail(const std::string& message) {
  std::fprintf(stderr, "mobilellm: error: %s\n", message.c_str());
  return 1;
}

}  // namespace mobilellm::cli

namespace {

using namespace mobilellm;
using cli::Fail;
using cli::g_cancel;
using Clock = std::chrono::steady_clock;

constexpr const char* kDemoModel = "demo-austen.mlm";

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string ExeDir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, size_t(n));
  return path.substr(0, path.find_last_of('/'));
}

// The bundled demo model: next to the binary, in the install prefix, or in the source tree.
std::string DefaultModel() {
  const std::string exe = ExeDir();
  for (const std::string& p : {exe + "/" + kDemoModel, exe + "/../share/mobilellm/" + kDemoModel,
                               std::string(MOBILELLM_SOURCE_DIR) + "/models/" + kDemoModel}) {
    if (::access(p.c_str(), R_OK) == 0) return p;
  }
  return "";
}

// The model file is mapped, not read: if it shrinks under us (truncated, rewritten in place), a
// touch of a page past its new end raises SIGBUS. Say so in one line naming the file and exit 1
// (mobilellm.h states the contract: the file must not change while a Model is alive).
char g_mapped_path[4096];

void ExitOnSigbus(int) {
  static const char kBefore[] = "mobilellm: error: ";
  static const char kAfter[] =
      ": the model file changed while it was in use (truncated or rewritten in place; replace a "
      "model by renaming a new file over it)\n";
  // Only async-signal-safe calls here.
  (void)!::write(STDERR_FILENO, kBefore, sizeof(kBefore) - 1);
  (void)!::write(STDERR_FILENO, g_mapped_path, std::strlen(g_mapped_path));
  (void)!::write(STDERR_FILENO, kAfter, sizeof(kAfter) - 1);
  ::_exit(1);
}

void ExitCleanlyIfChanged(const std::string& path) {
  std::snprintf(g_mapped_path, sizeof(g_mapped_path), "%s", path.c_str());
  std::signal(SIGBUS, ExitOnSigbus);
}

}  // namespace

namespace mobilellm::cli {

Result<std::shared_ptr<const Model>> LoadModel(std::string path, bool preload, bool verbose) {
  if (path.empty()) {
    path = DefaultModel();
    if (path.empty())
      return Status::Error(
          std::string("no -m given and the bundled demo model (") + kDemoModel +
          ") was not found next to the binary, in ../share/mobilellm or in models/");
    if (verbose) std::fprintf(stderr, "model: %s (bundled demo)\n", path.c_str());
  }
  LoadOptions lo;
  lo.preload = preload;
  ExitCleanlyIfChanged(path);
  return Model::Load(path, lo);
}

void AddSamplingFlags(CLI::App* app, SamplingFlags& f) {
  app->add_option("--temp", f.temp, "Temperature; 0 = greedy")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--top-k", f.top_k, "Keep the k most likely tokens; 0 = off")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--top-p", f.top_p, "Nucleus sampling mass; 1 = off")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app->add_option("--min-p", f.min_p, "Drop tokens below min-p * p(best); 0 = off")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app->add_option("--repeat-penalty", f.repeat_penalty, "Penalty for recent tokens; 1 = off")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--repeat-last-n", f.repeat_last_n, "Tokens the repeat penalty looks back over")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--seed", f.seed, "Random seed; default: random")->check(CLI::NonNegativeNumber);
}

SamplerOptions ToSamplerOptions(const SamplingFlags& f) {
  SamplerOptions o;
  o.temperature = f.temp, o.top_k = f.top_k, o.top_p = f.top_p, o.min_p = f.min_p;
  o.repeat_penalty = f.repeat_penalty, o.repeat_last_n = f.repeat_last_n;
  o.seed = f.seed >= 0 ? uint64_t(f.seed) : std::random_device{}();
  return o;
}

}  // namespace mobilellm::cli

namespace {

using cli::LoadModel;

void PrintKernelInfo(const Model& model, int threads) {
  std::fprintf(stderr, "kernels: %s (cpu: %s), threads: %d\n", model.kernels().name,
               CpuFeatures::Get().ToString().c_str(), threads);
}

// ------------------------------------------------------------------------------------------ info

// "chat template: 1234 bytes, first line: {% set loop_messages = messages %}{% for m...", then
// the bos/eos token strings it sees, or "chat template: none".
void PrintChatTemplate(const ModelFile& f) {
  const auto* t = f.Find(format::kChatTemplateTensor);
  if (t == nullptr) {
    std::printf("chat template: none (chat needs one: mobilellm-convert --chat-template FILE)\n");
    return;
  }
  const std::string_view source = f.Bytes(*t);
  std::string line(source.substr(0, source.find('\n')));
  if (line.size() > 72) {
    size_t cut = 72;
    while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
    line = line.substr(0, cut) + "...";
  }
  for (char& c : line)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  std::printf("chat template: %zu bytes, first line: %s\n", source.size(), line.c_str());
  auto token = [&](const char* name) {
    const auto* e = f.Find(name);
    return e ? "\"" + std::string(f.Bytes(*e)) + "\"" : std::string("(undefined)");
  };
  std::printf("               bos_token %s, eos_token %s\n", token(format::kBosTokenTensor).c_str(),
              token(format::kEosTokenTensor).c_str());
}

struct InfoArgs {
  std::string file;
  bool verify = false;
};

// Layers as ranges: "0-3, 7".
std::string LayerList(const ModelConfig& c, bool (ModelConfig::*has)(int) const) {
  std::string out;
  for (int l = 0; l < c.n_layers(); ++l) {
    if (!(c.*has)(l) || (l > 0 && (c.*has)(l - 1))) continue;
    int end = l;
    while (end + 1 < c.n_layers() && (c.*has)(end + 1)) ++end;
    out +=
        (out.empty() ? "" : ", ") + std::to_string(l) + (end > l ? "-" + std::to_string(end) : "");
  }
  return out.empty() ? "none" : out;
}

void PrintArchitecture(const ModelConfig& c) {
  if (c.arch == format::Arch::kMobileLlm) {
    std::printf("arch:        mobilellm (HF Llama), RoPE on every layer, full causal attention\n");
    return;
  }
  std::printf("arch:        llama4_text (HF Llama4ForCausalLM, dense), QK-norm %s\n",
              c.qk_norm ? "on (RoPE layers)" : "off");
  if (c.rope_scaling == format::RopeScaling::kLlama3)
    std::printf(
        "             rope scaling llama3: factor %g, low/high freq factor %g/%g, original "
        "context %d\n",
        c.rope_factor, c.rope_low_freq_factor, c.rope_high_freq_factor, c.rope_original_n_ctx);
  std::printf("             NoPE layers: %s", LayerList(c, &ModelConfig::NoPe).c_str());
  if (c.attn_temperature_tuning)
    std::printf(" (temperature tuning: attn_scale %g, floor_scale %g)", c.attn_scale,
                c.floor_scale);
  std::printf("\n             chunked-attention layers: %s",
              LayerList(c, &ModelConfig::Chunked).c_str());
  if (c.attention_chunk_size > 0) std::printf(" (chunks of %d)", c.attention_chunk_size);
  std::printf("\n");
}

int RunInfo(const InfoArgs& a) {
  ExitCleanlyIfChanged(a.file);
  auto file = ModelFile::Open(a.file);
  if (!file.ok()) return Fail(file.status().message());
  const ModelFile& f = **file;
  const ModelConfig& c = f.config();
  std::map<std::string, std::pair<int, uint64_t>> by_dtype;
  for (const auto* e : f.entries()) {
    const bool panels = e->layout == uint32_t(format::Layout::kPanels);
    auto& d = by_dtype[std::string(format::DTypeName(e->dtype)) + (panels ? " in panels" : "")];
    d.first++, d.second += e->nbytes;
  }
  const auto* tok = f.Find(format::kTokenizerTensor);
  const auto tokenizer = Tokenizer::Parse(c.tokenizer_kind, f.Bytes(*tok));
  if (!tokenizer.ok())
    return Fail(a.file + ": tensor 'tokenizer': " + tokenizer.status().message());
  // Checksums first: stdout gets the whole description or, on a mismatch, nothing.
  double verify_ms = 0;
  if (a.verify) {
    const auto t0 = Clock::now();
    const Status s = f.Verify();
    if (!s.ok()) return Fail(s.message());
    verify_ms = MsSince(t0);
  }
  std::printf("file:        %s (%.1f MiB, format v%u, alignment %u)\n", a.file.c_str(),
              f.size() / 1048576.0, f.header().version, f.header().alignment);
  std::printf("producer:    %s\n", f.header().producer);
  std::printf(
      "config:      vocab %d, dim %d, ffn %d, blocks %d x repeat %d = %d layers, heads %d (kv %d) "
      "x %d,\n",
      c.vocab_size, c.dim, c.ffn_dim, c.n_blocks, c.n_repeat, c.n_layers(), c.n_heads, c.n_kv_heads,
      c.head_dim);
  std::string eos = std::to_string(c.eos_id);
  for (int id : c.extra_eos_ids) eos += ", " + std::to_string(id);
  std::printf("             context %d, rope theta %g (%s), norm eps %g, bos %d, eos %s, head %s\n",
              c.n_ctx, c.rope_theta,
              c.rope_style == format::RopeStyle::kHalf ? "rotate_half" : "interleaved", c.norm_eps,
              c.bos_id, eos.c_str(), c.tied_head ? "tied to token_embd" : "separate output");
  PrintArchitecture(c);
  std::printf("parameters:  %.2fM stored, %.2fM effective (%lld / %lld)\n", c.StoredParams() / 1e6,
              c.EffectiveParams() / 1e6, (long long)c.StoredParams(),
              (long long)c.EffectiveParams());
  std::printf("tensors:     %zu", f.entries().size());
  for (const auto& [name, d] : by_dtype)
    std::printf(", %s: %d (%.2f MiB)", name.c_str(), d.first, d.second / 1048576.0);
  std::printf("\ntokenizer:   %s, %llu bytes\n", tokenizer->Summary().c_str(),
              (unsigned long long)tok->nbytes);
  PrintChatTemplate(f);
  if (a.verify)
    std::printf("verify:      all %zu checksums match (%.0f ms)\n", f.entries().size(), verify_ms);
  return 0;
}

// ------------------------------------------------------------------------------------- tokenize

struct TokenizeArgs {
  std::string model, prompt;
  bool no_bos = false, pieces = false;
};

int RunTokenize(const TokenizeArgs& a) {
  auto model = LoadModel(a.model, false, false);
  if (!model.ok()) return Fail(model.status().message());
  const std::vector<int> ids = (*model)->Tokenize(a.prompt, !a.no_bos);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (a.pieces) {
      std::printf("%6d  '%s'\n", ids[i], (*model)->TokenBytes(ids[i]).c_str());
    } else {
      std::printf("%s%d", i ? " " : "", ids[i]);
    }
  }
  if (!a.pieces) std::printf("\n");
  return 0;
}

// ------------------------------------------------------------------------------------- generate

struct GenerateArgs {
  std::string model, prompt, prompt_file;
  bool prompt_given = false;
  int n = 128, threads = 0, ctx = 0;
  std::string kv_type = "f16";
  cli::SamplingFlags sampling;
  std::vector<std::string> stop;
  bool json = false, verbose = false, preload = false, no_bos = false;
};

int RunGenerate(GenerateArgs& a) {
  const auto t_start = Clock::now();
  auto model_r = LoadModel(a.model, a.preload, a.verbose);
  if (!model_r.ok()) return Fail(model_r.status().message());
  std::shared_ptr<const Model> model = *model_r;

  std::string prompt = a.prompt;
  if (!a.prompt_file.empty()) {
    if (Status s = ReadFile(a.prompt_file, &prompt); !s.ok()) return Fail(s.message());
  } else if (!a.prompt_given && !::isatty(STDIN_FILENO)) {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    prompt = ss.str();
  }

  SessionOptions so;
  so.n_ctx = a.ctx;
  so.n_threads = cli::UsableThreads(a.threads);
  so.kv_type = a.kv_type == "f32" ? DType::kF32 : DType::kF16;
  auto session_r = Session::Create(model, so);
  if (!session_r.ok()) return Fail(session_r.status().message());
  Session& session = **session_r;
  const double load_ms = MsSince(t_start);
  if (a.verbose) PrintKernelInfo(*model, session.n_threads());

  GenerateOptions go;
  go.max_tokens = a.n;
  go.stop = a.stop;
  go.cancel = &g_cancel;
  go.sampling = cli::ToSamplerOptions(a.sampling);
  std::signal(SIGINT, [](int) { g_cancel.store(true); });

  const std::vector<int> prompt_ids = model->Tokenize(prompt, !a.no_bos);
  // The prompt is echoed with the first generated text, not before: Generate refuses a prompt
  // longer than the context only after it is called, and a script reading stdout must see the
  // whole result or nothing. Once the prompt is in, decoding has nothing left to refuse.
  bool echoed = a.json;
  auto echo_prompt = [&] {
    if (echoed) return;
    echoed = true;
    std::fputs(prompt.c_str(), stdout);
  };
  auto result = Generate(session, prompt_ids, go, [&](std::string_view text, int) {
    if (!a.json && !text.empty()) {
      echo_prompt();
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    }
    return true;
  });
  if (!result.ok()) return Fail(result.status().message());
  echo_prompt();  // nothing was generated (EOS first, -n 0)
  const GenerateResult& r = *result;
  const double prefill_tps = r.prefill_ms > 0 ? r.prompt_ids.size() * 1000.0 / r.prefill_ms : 0;
  const double decode_tps =
      r.decode_ms > 0 && r.n_decoded > 0 ? r.n_decoded * 1000.0 / r.decode_ms : 0;
  if (r.stop_reason == StopReason::kContextFull)
    std::fprintf(
        stderr,
        "\nnote: stopped at the end of the context (%d tokens); raise -c to generate more\n",
        session.n_ctx());
  if (a.json) {
    nlohmann::json j = {{"prompt_ids", r.prompt_ids},
                        {"ids", r.ids},
                        {"text", r.text},
                        {"stop_reason", StopReasonName(r.stop_reason)},
                        {"kernels", model->kernels().name},
                        {"threads", session.n_threads()},
                        {"timings",
                         {{"load_ms", load_ms},
                          {"prefill_ms", r.prefill_ms},
                          {"decode_ms", r.decode_ms},
                          {"prefill_tokens_per_s", prefill_tps},
                          {"decode_tokens_per_s", decode_tps}}}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
  }
  std::fflush(stdout);  // the text ends before the timings line on a shared terminal
  std::fprintf(stderr,
               "load %.1f ms | prompt %zu tokens, %.1f tok/s | generated %zu tokens, %.1f tok/s | "
               "stop: %s\n",
               load_ms, r.prompt_ids.size(), prefill_tps, r.ids.size(), decode_tps,
               StopReasonName(r.stop_reason));
  if (a.verbose) {  // now that decode has touched them: how many weights sit on 2 MiB pages
    const ModelFile& f = model->file();
    std::fprintf(stderr, "weights: %.1f of %.1f MiB mapped by 2 MiB pages\n",
                 HugePageBytes(&f.header(), f.size()) / 1048576.0, f.size() / 1048576.0);
  }
  return 0;
}

// ----------------------------------------------------------------------------------- perplexity

struct PerplexityArgs {
  std::string model, text_file;
  int ctx = 256, threads = 0;
  std::string kv_type = "f16";
  bool json = false, verbose = false;
};

int RunPerplexity(const PerplexityArgs& a) {
  auto model_r = LoadModel(a.model, false, a.verbose);
  if (!model_r.ok()) return Fail(model_r.status().message());
  std::shared_ptr<const Model> model = *model_r;
  std::string text;
  if (Status s = ReadFile(a.text_file, &text); !s.ok()) return Fail(s.message());
  if (a.ctx < 2) return Fail("-c must be at least 2");
  SessionOptions so;
  so.n_ctx = a.ctx, so.n_batch = a.ctx, so.n_threads = cli::UsableThreads(a.threads);
  so.logits_all = true;
  so.kv_type = a.kv_type == "f32" ? DType::kF32 : DType::kF16;
  auto session_r = Session::Create(model, so);
  if (!session_r.ok()) return Fail(session_r.status().message());
  Session& s = **session_r;
  if (a.verbose) PrintKernelInfo(*model, s.n_threads());

  // Protocol (same as tools/demo/train.py): windows of ctx-1 tokens, each run as [BOS] + window,
  // every window token scored given everything before it in the window.
  const std::vector<int> ids = model->Tokenize(text, false);
  if (ids.empty()) return Fail(a.text_file + ": no tokens in the text");
  const int vocab = model->config().vocab_size, w = a.ctx - 1;
  double nll = 0;
  const auto t0 = Clock::now();
  std::optional<cli::Progress> progress;
  if (!a.json) progress.emplace("perplexity", ids.size(), "tokens");
  std::vector<int> window;
  for (size_t start = 0; start < ids.size(); start += w) {
    const size_t n = std::min<size_t>(w, ids.size() - start);
    window.assign(1, model->config().bos_id);
    window.insert(window.end(), ids.begin() + start, ids.begin() + start + n);
    s.Reset();
    const Status st = s.Evaluate(window);
    if (!st.ok()) {
      if (progress) progress->Finish();
      return Fail(st.message());
    }
    for (size_t i = 0; i < n; ++i) {
      const float* l = s.logits_at(int(i));
      double max = l[0], sum = 0;
      for (int v = 1; v < vocab; ++v) max = std::max(max, double(l[v]));
      for (int v = 0; v < vocab; ++v) sum += std::exp(double(l[v]) - max);
      nll -= double(l[window[i + 1]]) - max - std::log(sum);
    }
    if (progress) progress->Update(start + n);
  }
  const double secs = MsSince(t0) / 1000.0, mean = nll / ids.size();
  if (progress) progress->Finish();
  if (a.json) {
    nlohmann::json j = {{"tokens", ids.size()},
                        {"ctx", a.ctx},
                        {"mean_nll", mean},
                        {"perplexity", std::exp(mean)},
                        {"tokens_per_s", ids.size() / secs}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("tokens %zu, context %d: mean NLL %.6f, perplexity %.4f, %.1f tok/s\n", ids.size(),
                a.ctx, mean, std::exp(mean), ids.size() / secs);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "mobilellm: on-device inference for Meta's MobileLLM models.\n"
      "Runs .mlm files made by mobilellm-convert; with no -m, uses the bundled demo model."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "mobilellm 0.1.0");
  // A MOBILELLM_ISA this CPU cannot honour is said once, whatever the subcommand: the run goes
  // on with the best table, but a benchmark must not silently measure another one.
  if (std::string why; SelectKernels(&why), !why.empty())
    std::fprintf(stderr, "mobilellm: warning: %s; using %s\n", why.c_str(), SelectKernels().name);

  GenerateArgs g;
  auto* gen = app.add_subcommand("generate", "Generate text from a prompt, streaming it to stdout");
  gen->add_option("-m,--model", g.model, "Model file (.mlm); default: the bundled demo model");
  gen->add_option("-p,--prompt", g.prompt, "Prompt text (else -f, else stdin if not a terminal)");
  gen->add_option("-f,--file", g.prompt_file, "Read the prompt from this file")
      ->check(CLI::ExistingFile);
  gen->add_option("-n,--n-predict", g.n, "Tokens to generate at most")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cli::AddSamplingFlags(gen, g.sampling);
  gen->add_option("-t,--threads", g.threads, "Threads; default: physical cores")
      ->check(CLI::Range(1, 256));
  gen->add_option("-c,--ctx", g.ctx, "Context length (KV cache); default: the model's")
      ->check(CLI::Range(1, 1 << 20));
  gen->add_option("--kv-type", g.kv_type, "KV-cache type: f16 (half the memory) or f32")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "f32"}));
  gen->add_option("--stop", g.stop, "Stop when this string is generated (repeatable)");
  gen->add_flag("--no-bos", g.no_bos,
                "Do not prepend BOS (the prompt has its own, as a rendered chat template does)");
  gen->add_flag("--json", g.json, "Print one JSON object (ids, text, timings) instead of the text");
  gen->add_flag("--preload", g.preload, "Fault in and lock all weights at load");
  gen->add_flag("-v,--verbose", g.verbose,
                "Print the kernel table, CPU features and threads; at the end, how much of the "
                "weights 2 MiB pages map");

  cli::ChatArgs ch;
  CLI::App* chat = cli::AddChatCommand(app, ch);

  TokenizeArgs tk;
  auto* tok = app.add_subcommand("tokenize", "Print the token ids of a text");
  tok->add_option("-m,--model", tk.model, "Model file (.mlm); default: the bundled demo model");
  tok->add_option("-p,--prompt", tk.prompt, "Text to tokenize")->required();
  tok->add_flag("--no-bos", tk.no_bos, "Do not prepend BOS");
  tok->add_flag("--pieces", tk.pieces, "One token per line with its text");

  InfoArgs in;
  auto* info = app.add_subcommand("info", "Describe a model file and check it");
  info->add_option("file", in.file, "Model file (.mlm)")->required();
  info->add_flag("--verify", in.verify, "Also recompute every tensor's checksum");

  PerplexityArgs pp;
  auto* ppl = app.add_subcommand("perplexity", "Perplexity of a model over a text file");
  ppl->add_option("-m,--model", pp.model, "Model file (.mlm); default: the bundled demo model");
  ppl->add_option("-f,--file", pp.text_file, "Text file")->required()->check(CLI::ExistingFile);
  ppl->add_option("-c,--ctx", pp.ctx, "Window length in tokens, BOS included")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 16));
  ppl->add_option("-t,--threads", pp.threads, "Threads; default: physical cores")
      ->check(CLI::Range(1, 256));
  ppl->add_option("--kv-type", pp.kv_type, "KV-cache type: f16 (half the memory) or f32")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "f32"}));
  ppl->add_flag("--json", pp.json, "Print one JSON object");
  ppl->add_flag("-v,--verbose", pp.verbose, "Print the kernel table, CPU features and threads");

  cli::BenchArgs bn;
  auto* bench =
      app.add_subcommand("bench", "Benchmark load, prefill and decode (one process per row)");
  bench->add_option("-m,--model", bn.models, "Model file(s) (.mlm); repeatable")
      ->required()
      ->check(CLI::ExistingFile);
  bench->add_option("-p,--n-prompt", bn.n_prompt, "Prompt tokens")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  bench->add_option("-n,--n-gen", bn.n_gen, "Generated tokens")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 16));
  bench->add_option("-r,--reps", bn.reps, "Repetitions after one warm-up")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  bench->add_option("-t,--threads", bn.threads, "Thread counts, e.g. 1,2")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  bench->add_option("--kv-type", bn.kv_type, "KV-cache type: f16 (half the memory) or f32")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "f32"}));
  bench->add_option("--output", bn.output, "md, json (one object per row) or csv")
      ->capture_default_str()
      ->check(CLI::IsMember({"md", "json", "csv"}));
  bench->add_flag(
      "--profile", bn.profile,
      "Also time each phase of a decode step (matmuls with their GB/s, attention, ...)");

  try {
    app.parse(argc, argv);
    g.prompt_given = gen->count("--prompt") > 0;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(
        stderr,
        "mobilellm: usage error: %s\nRun 'mobilellm --help' or 'mobilellm SUBCOMMAND --help'.\n",
        e.what());
    return 2;
  }
  if (*gen) return RunGenerate(g);
  if (*chat) return cli::RunChat(ch);
  if (*tok) return RunTokenize(tk);
  if (*info) return RunInfo(in);
  if (*ppl) return RunPerplexity(pp);
  if (*bench) return cli::RunBench(bn);
  return 2;
}

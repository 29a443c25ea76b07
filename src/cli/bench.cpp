// `mobilellm bench`: the llama-bench of this project. Each (model, threads) row runs in its own
// child process, so load times start from nothing and peak RSS is that row's alone.
#include "bench.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "mobilellm/memory.h"
#include "mobilellm/mobilellm.h"
#include "progress.h"
#include "threads.h"

namespace mobilellm::cli {

namespace {

using Clock = std::chrono::steady_clock;
double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Drops the file's pages from the page cache (no root needed: posix_fadvise on unmapped pages).
bool DropFromPageCache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  ::fdatasync(fd);
  const bool ok = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
  ::close(fd);
  return ok;
}

struct Stats {
  double median = 0, min = 0, max = 0;
};
Stats Summarize(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return {n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v.front(), v.back()};
}

// One row, measured in this (child) process. Returns the row as JSON, or {"error": ...}.
nlohmann::json MeasureRow(const BenchArgs& a, const std::string& path, int threads) {
  nlohmann::json row = {
      {"model", path}, {"threads", threads}, {"n_prompt", a.n_prompt}, {"n_gen", a.n_gen}};
  // Cold: the file leaves the page cache first, then load + init + prompt + first token.
  const bool dropped = DropFromPageCache(path);
  auto cold_t0 = Clock::now();
  auto model = Model::Load(path);
  if (!model.ok()) return {{"error", model.status().message()}};
  const auto cold_t1 = Clock::now();
  SessionOptions so;
  so.n_threads = threads;
  so.kv_type = a.kv_type == "f32" ? DType::kF32 : DType::kF16;
  so.n_ctx = a.n_prompt + a.n_gen + 1;
  so.n_batch = std::max(1, a.n_prompt);
  so.profile = a.profile;
  auto session = Session::Create(*model, so);
  if (!session.ok()) return {{"error", session.status().message()}};
  const auto cold_t2 = Clock::now();
  const ModelConfig& c = (*model)->config();
  std::vector<int> prompt = {c.bos_id};
  for (int i = 1; i < a.n_prompt; ++i)
    prompt.push_back(3 + (i * 7919) % std::max(1, c.vocab_size - 3));
  SamplerOptions greedy;
  greedy.temperature = 0;
  Sampler sampler(greedy);
  Session& s = **session;
  Status st = s.Evaluate(prompt);
  if (!st.ok()) return {{"error", st.message()}};
  int token = sampler.Sample(s.logits(), c.vocab_size, {});
  const auto cold_t3 = Clock::now();
  row["cache"] = dropped ? "dropped (posix_fadvise)" : "could not drop: warm";
  row["cold_load_ms"] = Ms(cold_t0, cold_t1);
  row["cold_init_ms"] = Ms(cold_t1, cold_t2);
  row["cold_ttft_ms"] = Ms(cold_t0, cold_t3);

  std::vector<double> prefill, decode, ttft;
  DecodeProfile warm_up;  // the profile after the warm-up, taken off at the end
  double decode_seconds = 0;
  for (int rep = -1; rep < a.reps; ++rep) {  // rep -1 is the warm-up
    if (rep == 0) warm_up = s.profile();
    s.Reset();
    const auto t0 = Clock::now();
    st = s.Evaluate(prompt);
    if (!st.ok()) return {{"error", st.message()}};
    token = sampler.Sample(s.logits(), c.vocab_size, {});
    const auto t1 = Clock::now();
    for (int i = 0; i < a.n_gen; ++i) {
      st = s.Evaluate(&token, 1);
      if (!st.ok()) return {{"error", st.message()}};
      token = sampler.Sample(s.logits(), c.vocab_size, {});
    }
    const auto t2 = Clock::now();
    if (rep < 0) continue;
    ttft.push_back(Ms(t0, t1));
    prefill.push_back(a.n_prompt * 1000.0 / Ms(t0, t1));
    if (a.n_gen > 0) decode.push_back(a.n_gen * 1000.0 / Ms(t1, t2));
    decode_seconds += Ms(t1, t2) / 1000;
  }
  if (a.profile && a.reps > 0 && a.n_gen > 0) {
    // Per decoded token: each phase's time, its share of the decode time, and the bytes it read
    // (matmuls: weights; attention: the KV cache) over that time; "outside" is the rest of a step
    // (sampling, bookkeeping).
    const DecodeProfile& p = s.profile();
    const double steps = double(p.passes - warm_up.passes);
    double in_passes = 0;
    nlohmann::json phases = nlohmann::json::array();
    for (size_t i = 0; i < p.phases.size(); ++i) {
      const double sec = p.phases[i].seconds - warm_up.phases[i].seconds;
      const double bytes = double(p.phases[i].weight_bytes) * steps +
                           double(p.phases[i].cache_bytes - warm_up.phases[i].cache_bytes);
      in_passes += sec;
      phases.push_back({{"phase", p.phases[i].name},
                        {"us_per_token", sec / steps * 1e6},
                        {"share", sec / decode_seconds},
                        {"bytes_per_token", bytes / steps},
                        {"GBps", sec > 0 ? bytes / sec / 1e9 : 0.0}});
    }
    const double outside = std::max(0.0, decode_seconds - in_passes);
    phases.push_back({{"phase", "outside"},
                      {"us_per_token", outside / steps * 1e6},
                      {"share", outside / decode_seconds},
                      {"bytes_per_token", 0.0},
                      {"GBps", 0.0}});
    row["decode_profile"] = phases;
  }
  // After decode has touched every weight: how many of them 2 MiB pages map (memory.h).
  row["weights_2m_pages_MiB"] =
      HugePageBytes(&(*model)->file().header(), (*model)->file().size()) / 1048576.0;
  // Warm load: the file is in the page cache now.
  const auto w0 = Clock::now();
  auto again = Model::Load(path);
  const auto w1 = Clock::now();
  auto again_session =
      again.ok() ? Session::Create(*again, so) : Result<std::unique_ptr<Session>>(again.status());
  const auto w2 = Clock::now();

  uint64_t weight_bytes = 0;
  for (const auto* e : (*model)->file().entries())
    if (std::string(e->name) != format::kTokenizerTensor) weight_bytes += e->nbytes;
  const Stats p = Summarize(prefill), d = Summarize(decode), f = Summarize(ttft);
  row["warm_load_ms"] = Ms(w0, w1);
  row["warm_init_ms"] = Ms(w1, w2);
  row["ttft_ms"] = f.median;
  row["prefill_tok_s"] = {{"median", p.median}, {"min", p.min}, {"max", p.max}};
  row["decode_tok_s"] = {{"median", d.median}, {"min", d.min}, {"max", d.max}};
  row["decode_ms_per_token"] = d.median > 0 ? 1000.0 / d.median : 0;
  row["kernels"] = (*model)->kernels().name;
  row["model_bytes"] = (*model)->file().size();
  row["weight_bytes"] = weight_bytes;
  row["decode_weight_GBps"] = weight_bytes * d.median / 1e9;
  row["params"] = c.StoredParams();
  row["layers"] = std::to_string(c.n_blocks) + "x" + std::to_string(c.n_repeat);
  std::string dtype;
  for (const auto* e : (*model)->file().entries())
    if (std::string(e->name) == "blk.0.ffn_up") dtype = format::DTypeName(e->dtype);
  row["weights"] = dtype;
  return row;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string Basename(const std::string& p) {
  return p.substr(p.find_last_of('/') + 1);
}

}  // namespace

int RunBench(const BenchArgs& a) {
  std::vector<nlohmann::json> rows;
  const size_t total = a.models.size() * a.threads.size();
  // A bar over the rows on a terminal; elsewhere one plain line as each row starts.
  Progress progress("bench", total, "rows");
  for (const std::string& path : a.models) {
    for (const int asked : a.threads) {
      const int threads = UsableThreads(asked);
      const std::string row_name =
          Basename(path) + ", " + std::to_string(threads) + " thread" + (threads == 1 ? "" : "s");
      if (progress.tty())
        progress.Update(rows.size(), row_name);
      else
        std::fprintf(stderr, "[%zu/%zu] %s ...\n", rows.size() + 1, total, row_name.c_str());
      int fds[2];
      if (::pipe(fds) != 0) return 1;
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::close(fds[0]);
        const std::string out = MeasureRow(a, path, threads).dump() + "\n";
        if (::write(fds[1], out.data(), out.size()) < 0) _exit(3);
        _exit(0);
      }
      ::close(fds[1]);
      std::string out;
      char buf[4096];
      for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;) out.append(buf, size_t(n));
      ::close(fds[0]);
      int status = 0;
      struct rusage ru;
      ::wait4(pid, &status, 0, &ru);
      nlohmann::json row = nlohmann::json::parse(out, nullptr, false);
      if (row.is_discarded() || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        row = {{"error", "benchmark process failed (status " + std::to_string(status) + ")"}};
      if (row.contains("error")) {
        progress.Finish();
        std::fprintf(stderr, "mobilellm: error: %s\n", row["error"].get<std::string>().c_str());
        return 1;
      }
      row["peak_rss_mib"] = ru.ru_maxrss / 1024.0;
      row["threads_asked"] = asked;
      rows.push_back(row);
      if (progress.tty()) progress.Update(rows.size(), row_name);
    }
  }
  progress.Finish();

  if (a.output == "json") {
    for (const auto& r : rows) std::printf("%s\n", r.dump().c_str());
    return 0;
  }
  const char* cols[] = {
      "model",   "weights",       "layers",       "threads",       "kernels", "load ms (cold/warm)",
      "ttft ms", "prefill tok/s", "decode tok/s", "decode ms/tok", "GB/s",    "peak RSS MiB"};
  auto cells = [&](const nlohmann::json& r) {
    auto range = [](const nlohmann::json& s, int d) {
      return Fixed(s["median"], d) + " (" + Fixed(s["min"], d) + "-" + Fixed(s["max"], d) + ")";
    };
    return std::vector<std::string>{
        Basename(r["model"]),
        r["weights"],
        r["layers"],
        std::to_string(r["threads"].get<int>()),
        r["kernels"],
        Fixed(r["cold_load_ms"].get<double>() + r["cold_init_ms"].get<double>(), 1) + " / " +
            Fixed(r["warm_load_ms"].get<double>() + r["warm_init_ms"].get<double>(), 1),
        Fixed(r["ttft_ms"], 1),
        range(r["prefill_tok_s"], 1),
        range(r["decode_tok_s"], 1),
        Fixed(r["decode_ms_per_token"], 2),
        Fixed(r["decode_weight_GBps"], 1),
        Fixed(r["peak_rss_mib"], 1)};
  };
  if (a.output == "csv") {
    for (size_t i = 0; i < std::size(cols); ++i) std::printf("%s%s", i ? "," : "", cols[i]);
    std::printf("\n");
    for (const auto& r : rows) {
      const auto c = cells(r);
      for (size_t i = 0; i < c.size(); ++i) std::printf("%s\"%s\"", i ? "," : "", c[i].c_str());
      std::printf("\n");
    }
    return 0;
  }
  std::printf("|");
  for (const char* c : cols) std::printf(" %s |", c);
  std::printf("\n|");
  for (size_t i = 0; i < std::size(cols); ++i) std::printf(i < 5 ? "---|" : "---:|");
  std::printf("\n");
  for (const auto& r : rows) {
    std::printf("|");
    for (const auto& c : cells(r)) std::printf(" %s |", c.c_str());
    std::printf("\n");
  }
  std::printf(
      "\n%d-token prompt, %d generated tokens, %d repetitions after a warm-up; medians (min-max). "
      "Cold load: %s.\n",
      a.n_prompt, a.n_gen, a.reps,
      rows.empty() ? "-" : rows[0]["cache"].get<std::string>().c_str());
  for (const auto& r : rows) {
    if (!r.contains("decode_profile")) continue;
    std::printf(
        "\nDecode profile, %s, %d thread%s: per generated token, over all repetitions "
        "(MB read: weights, and the KV cache for attention)\n\n",
        Basename(r["model"]).c_str(), r["threads"].get<int>(),
        r["threads"].get<int>() == 1 ? "" : "s");
    std::printf("| phase | us/token | share | MB read/token | GB/s |\n|---|---:|---:|---:|---:|\n");
    for (const auto& ph : r["decode_profile"]) {
      const double mb = ph["bytes_per_token"].get<double>() / 1e6;
      std::printf("| %s | %s | %s%% | %s | %s |\n", ph["phase"].get<std::string>().c_str(),
                  Fixed(ph["us_per_token"], 1).c_str(),
                  Fixed(100 * ph["share"].get<double>(), 1).c_str(),
                  mb > 0 ? Fixed(mb, 1).c_str() : "-", mb > 0 ? Fixed(ph["GBps"], 1).c_str() : "-");
    }
  }
  return 0;
}

}  // namespace mobilellm::cli

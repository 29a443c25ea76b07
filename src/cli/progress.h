// Progress of a long command on stderr, shared by mobilellm (perplexity, bench) and
// mobilellm-convert. On a terminal: one bar redrawn in place (at most 10 times a second) with the
// count, the rate and the time left. Anywhere else (a log, a pipe, CI): a plain line at each
// quarter, never a carriage return, so a log gets at most four lines. MOBILELLM_PROGRESS=tty|plain
// overrides the terminal test.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace mobilellm::cli {

class Progress {
 public:
  // `what`: the task ("perplexity"); `unit`: what is counted ("tokens"); `scale` divides counts
  // for display (1 << 20 with unit "MiB" for bytes).
  Progress(std::string what, uint64_t total, std::string unit, double scale = 1)
      : what_(std::move(what)),
        unit_(std::move(unit)),
        total_(total),
        scale_(scale),
        tty_(StderrIsTerminal()),
        t0_(Clock::now()) {}
  ~Progress() { Finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  bool tty() const { return tty_; }

  // `done` of total are finished; `note` (optional) says what runs now.
  void Update(uint64_t done, const std::string& note = "") {
    if (finished_) return;
    done_ = std::min(done, total_);
    const double s = Seconds();
    if (tty_) {
      if (done_ < total_ && s - last_draw_ < 0.1 && drawn_) return;
      last_draw_ = s, drawn_ = true;
      constexpr int kWidth = 24;
      const int fill = total_ ? int(kWidth * done_ / total_) : kWidth;
      std::string bar(size_t(fill), '#');
      bar.append(size_t(kWidth - fill), '.');
      std::fprintf(stderr, "\r\033[K%s [%s] %3d%%  %s  %s", what_.c_str(), bar.c_str(), Percent(),
                   Counts(s).c_str(), note.c_str());
      std::fflush(stderr);
      return;
    }
    const int quarter = total_ ? int(4 * done_ / total_) : 4;
    if (quarter <= last_quarter_ || (quarter == 0 && done_ == 0)) return;
    last_quarter_ = quarter;
    std::fprintf(stderr, "%s: %d%%, %s%s%s\n", what_.c_str(), Percent(), Counts(s).c_str(),
                 note.empty() ? "" : ", ", note.c_str());
  }

  // Ends the bar's line on a terminal (the last state drawn); a plain log already has its 100%.
  void Finish() {
    if (finished_) return;
    if (tty_ && drawn_) {
      last_draw_ = -1;
      Update(done_);
      std::fputc('\n', stderr);
    }
    finished_ = true;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static bool StderrIsTerminal() {
    const char* force = std::getenv("MOBILELLM_PROGRESS");
    if (force && std::strcmp(force, "tty") == 0) return true;
    if (force && std::strcmp(force, "plain") == 0) return false;
    return ::isatty(STDERR_FILENO) == 1;
  }
  double Seconds() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
  int Percent() const { return total_ ? int(100 * done_ / total_) : 100; }
  // "1200/5000 tokens, 310 tokens/s, 0:12 left" (rate and time left once there is a rate).
  std::string Counts(double s) const {
    char buf[160];
    const double rate = s > 0 ? done_ / scale_ / s : 0;
    int n = std::snprintf(buf, sizeof(buf), "%.0f/%.0f %s", done_ / scale_, total_ / scale_,
                          unit_.c_str());
    if (rate > 0 && n > 0 && size_t(n) < sizeof(buf)) {
      const int left = int((total_ - done_) / scale_ / rate + 0.5);
      n += std::snprintf(buf + n, sizeof(buf) - size_t(n), ", %.1f %s/s, %d:%02d left", rate,
                         unit_.c_str(), left / 60, left % 60);
    }
    return buf;
  }

  std::string what_, unit_;
  uint64_t total_, done_ = 0;
  double scale_;
  bool tty_, drawn_ = false, finished_ = false;
  double last_draw_ = -1;
  int last_quarter_ = 0;
  Clock::time_point t0_;
};

}  // namespace mobilellm::cli

// PhaseTimer: adds the wall time of a scope to one phase of a DecodeProfile.
//
// The decoder opens one per phase of a one-token pass when SessionOptions::profile is on; off, it
// holds a null profile and costs one untaken branch at each end, no clock read.
#pragma once

#include <chrono>

#include "mobilellm/mobilellm.h"

namespace mobilellm {

// DecodeProfile's phases, in the order a forward pass runs them (mobilellm.h says what each holds).
enum Phase { kAttnNorm, kQkv, kRopeKv, kAttention, kAttnOut, kFfnNorm, kGateUp, kDown, kHead };
inline constexpr const char* kPhaseNames[] = {
    "attn_norm", "qkv", "rope_kv", "attention", "attn_out", "ffn_norm", "gate_up", "down", "head"};

class PhaseTimer {
 public:
  using Clock = std::chrono::steady_clock;
  // profile null: does nothing.
  PhaseTimer(DecodeProfile* profile, Phase phase) : profile_(profile), phase_(phase) {
    if (profile_) start_ = Clock::now();
  }
  ~PhaseTimer() {
    if (profile_)
      profile_->phases[phase_].seconds +=
          std::chrono::duration<double>(Clock::now() - start_).count();
  }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

 private:
  DecodeProfile* profile_;
  Phase phase_;
  Clock::time_point start_;
};

}  // namespace mobilellm

// Counts an engine's steps and their wall time, for the per-rank metrics: written by the thread that runs the
// steps, read by the JS thread at any time (info()).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace loraserve {

class StepClock {
 public:
  // Times one step from its construction to its end (a step that throws counts too: it took that long).
  class Timing {
   public:
    explicit Timing(StepClock& clock) : clock_(clock), start_(std::chrono::steady_clock::now()) {}
    ~Timing() {
      const auto spent = std::chrono::steady_clock::now() - start_;
      clock_.nanos_.fetch_add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(spent).count()),
                              std::memory_order_relaxed);
      clock_.steps_.fetch_add(1, std::memory_order_relaxed);
    }
    Timing(const Timing&) = delete;
    Timing& operator=(const Timing&) = delete;

   private:
    StepClock& clock_;
    std::chrono::steady_clock::time_point start_;
  };

  Timing start() { return Timing(*this); }
  uint64_t steps() const { return steps_.load(std::memory_order_relaxed); }
  double seconds() const { return static_cast<double>(nanos_.load(std::memory_order_relaxed)) * 1e-9; }

 private:
  std::atomic<uint64_t> steps_{0};
  std::atomic<uint64_t> nanos_{0};
};

}  // namespace loraserve

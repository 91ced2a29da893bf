// Counts an engine's steps and their wall time, for the per-rank metrics: written by the thread that runs the
// steps, read by the JS thread at any time (info()). Also the time between one step's end and the next one's
// start, and the part of it when the next step had not even been started by the JS thread: the device sat idle
// waiting for the engine loop, not for the engine's own host work. A time when the loop had nothing to run is
// neither: the loop says when it resumes from such a time (resume()), and the next gap starts there.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace loraserve {

class StepClock {
 public:
  using Clock = std::chrono::steady_clock;

  // Times one step from its construction to its end (a step that throws counts too: it took that long).
  class Timing {
   public:
    // startedAt: when the JS thread started the step; left out (a follower's step), no wait is counted.
    Timing(StepClock& clock, Clock::time_point startedAt) : clock_(clock), start_(Clock::now()) {
      const int64_t lastEnd = clock_.lastEndNanos_.load(std::memory_order_relaxed);
      if (lastEnd == 0) return;
      const int64_t gap = std::max<int64_t>(0, nanosOf(start_) - lastEnd);
      const int64_t waited = startedAt == Clock::time_point{} ? 0 : std::clamp<int64_t>(nanosOf(startedAt) - lastEnd, 0, gap);
      clock_.gapNanos_.fetch_add(static_cast<uint64_t>(gap), std::memory_order_relaxed);
      clock_.loopWaitNanos_.fetch_add(static_cast<uint64_t>(waited), std::memory_order_relaxed);
    }
    ~Timing() {
      const Clock::time_point end = Clock::now();
      clock_.nanos_.fetch_add(static_cast<uint64_t>(nanosOf(end) - nanosOf(start_)), std::memory_order_relaxed);
      clock_.steps_.fetch_add(1, std::memory_order_relaxed);
      clock_.lastEndNanos_.store(nanosOf(end), std::memory_order_relaxed);
    }
    Timing(const Timing&) = delete;
    Timing& operator=(const Timing&) = delete;

   private:
    StepClock& clock_;
    Clock::time_point start_;
  };

  Timing start(Clock::time_point startedAt = {}) { return Timing(*this, startedAt); }
  // Any thread: the engine had no work since the last step's end and has some now; the time since that end is
  // not part of the next step's gap (nor, so, of its wait). A step still running ends later and moves it again.
  void resume() { lastEndNanos_.store(nanosOf(Clock::now()), std::memory_order_relaxed); }
  uint64_t steps() const { return steps_.load(std::memory_order_relaxed); }
  double seconds() const { return secondsOf(nanos_); }
  // Between consecutive steps: all of it, and the part before the JS thread had started the next step.
  double gapSeconds() const { return secondsOf(gapNanos_); }
  double loopWaitSeconds() const { return secondsOf(loopWaitNanos_); }

 private:
  static int64_t nanosOf(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }
  static double secondsOf(const std::atomic<uint64_t>& nanos) {
    return static_cast<double>(nanos.load(std::memory_order_relaxed)) * 1e-9;
  }

  std::atomic<uint64_t> steps_{0};
  std::atomic<uint64_t> nanos_{0};
  std::atomic<uint64_t> gapNanos_{0};
  std::atomic<uint64_t> loopWaitNanos_{0};
  // When the last step ended, or the last resume(); 0 before either.
  std::atomic<int64_t> lastEndNanos_{0};
};

}  // namespace loraserve

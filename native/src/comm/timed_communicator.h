// A host communicator that also counts the wall time its collectives take (all-reduce, all-gather: the ones
// inside a step), for the per-rank metrics. Only for communicators that finish their work before returning
// (Gloo, SingleRank); NCCL's calls return once queued, so their host time says nothing.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "communicator.h"

namespace loraserve {

class TimedCommunicator final : public Communicator {
 public:
  explicit TimedCommunicator(std::unique_ptr<Communicator> inner) : inner_(std::move(inner)) {}

  int rank() const override { return inner_->rank(); }
  int world() const override { return inner_->world(); }
  void allReduceSum(float* data, size_t count) override {
    timed([&] { inner_->allReduceSum(data, count); });
  }
  void broadcast(void* bytes, size_t size, int root) override { inner_->broadcast(bytes, size, root); }
  void allGather(const float* mine, size_t count, float* all) override {
    timed([&] { inner_->allGather(mine, count, all); });
  }
  void barrier() override { inner_->barrier(); }

  // Any thread: seconds spent in all-reduces and all-gathers so far.
  double collectiveSeconds() const { return static_cast<double>(nanos_.load(std::memory_order_relaxed)) * 1e-9; }

 private:
  template <typename Call>
  void timed(Call call) {
    const auto start = std::chrono::steady_clock::now();
    call();
    const auto spent = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start);
    nanos_.fetch_add(static_cast<uint64_t>(spent.count()), std::memory_order_relaxed);
  }

  std::unique_ptr<Communicator> inner_;
  std::atomic<uint64_t> nanos_{0};
};

}  // namespace loraserve

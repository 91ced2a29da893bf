// A small fixed pool for loops that OpenBLAS does not cover (attention over heads and tokens on cpu; an adapter
// load's conversion on cuda, adapter_slots.h). The calling thread works too, so a pool of N threads starts N - 1.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace loraserve {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Calls body(begin, end) on chunks covering [0, count), chunks taken dynamically so uneven items balance;
  // returns when all are done and rethrows the first exception a chunk threw.
  void parallelFor(int64_t count, const std::function<void(int64_t, int64_t)>& body);

 private:
  void workerLoop();
  void runChunks();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  int busyWorkers_ = 0;
  // The job being run.
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
  int64_t count_ = 0;
  int64_t chunk_ = 1;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
};

}  // namespace loraserve

// Owning typed allocations: device memory (plain cudaMalloc: never managed memory, which can hang a full card)
// and pinned host memory (what asynchronous copies need to overlap with kernels).
#pragma once

#include <cstddef>
#include <utility>

#include "cuda_check.h"

namespace loraserve::cuda {

template <typename T, bool kPinnedHost = false>
class Allocation {
 public:
  Allocation() = default;
  explicit Allocation(size_t count) { resize(count); }
  ~Allocation() { release(); }
  Allocation(const Allocation&) = delete;
  Allocation& operator=(const Allocation&) = delete;
  Allocation(Allocation&& other) noexcept { *this = std::move(other); }
  Allocation& operator=(Allocation&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }

  // Drops the old contents.
  void resize(size_t count) {
    release();
    if (count > 0) {
      void** target = reinterpret_cast<void**>(&data_);
      checkCuda(kPinnedHost ? cudaMallocHost(target, count * sizeof(T)) : cudaMalloc(target, count * sizeof(T)),
                kPinnedHost ? "cudaMallocHost" : "cudaMalloc");
    }
    count_ = count;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

 private:
  void release() {
    if (data_) kPinnedHost ? cudaFreeHost(data_) : cudaFree(data_);
    data_ = nullptr;
    count_ = 0;
  }

  T* data_ = nullptr;
  size_t count_ = 0;
};

template <typename T>
using DeviceBuffer = Allocation<T, false>;
template <typename T>
using PinnedBuffer = Allocation<T, true>;

}  // namespace loraserve::cuda

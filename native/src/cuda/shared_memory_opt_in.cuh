// A kernel launched with more than 48 KiB of dynamic shared memory must first opt in to it, once per kernel and
// device. The kernel is a template argument, so each one keeps its own record: a bit per device (a device past
// the 64th opts in on every launch, which is correct, only slower).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "cuda_check.h"

namespace loraserve::cuda {

template <auto kKernel>
void allowSharedBytes(size_t bytes, const char* what) {
  static std::atomic<uint64_t> optedIn{0};
  int device = 0;
  checkCuda(cudaGetDevice(&device), "cudaGetDevice");
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (optedIn.load(std::memory_order_acquire) & bit) return;
  checkCuda(cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)), what);
  optedIn.fetch_or(bit, std::memory_order_release);
}

}  // namespace loraserve::cuda

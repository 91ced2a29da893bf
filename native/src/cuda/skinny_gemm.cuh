// The matrix products of batched decode steps (2 to kSkinnyMaxRows rows of x): y = x · wᵀ is then bound by reading
// w once, but cuBLAS's default kernels for such skinny shapes read it far slower than the copy bandwidth. Here w
// streams through the tensor cores as the mma's 16-row A side (16 output features per instruction) with the rows of x
// as its 8-column B side, so every weight element is read from memory exactly once per call, 16 bytes a load with a
// whole chunk's loads in flight. Products whose few output features would leave SMs idle split their `in` across
// blocks; the last block of a column of splits to finish sums the column's partial sums, always in split order, so
// the result does not depend on timing and no second kernel is launched.
//
// Why at most 8 rows: measured on the H200 (bench/cuda-decode.ts, 2026-12-03), this kernel reads the weights
// faster than cuBLAS at 8 rows on 4096x4096 (1.95 against 1.62 TB/s) and as fast within 3 % at the MLP's shapes
// (2.96 / 2.98 and 2.89 / 2.99 TB/s), but slower from 32 rows on (2.10 / 2.90 at 32, 1.67 / 2.70 at 64 on
// 4096x14336): run up to 64 rows, decode at batch 32 took 10.37 ms instead of 8.46. So it takes 2 to 8 rows and
// cuBLAS the rest. The kernel is written for up to 8 tiles of 8 rows; what limits it past one tile (the pause
// between chunks, the partial sums, the re-reads of x from shared memory) is docs/performance.md's to-do.
#pragma once

#include <cuda_runtime.h>

#include "device_buffer.h"

namespace loraserve::cuda {

constexpr int kSkinnyMaxRows = 8;

class SkinnyGemm {
 public:
  // Sizes the split by the current device's SMs; its scratch is zeroed on `stream`, which every call must use.
  explicit SkinnyGemm(cudaStream_t stream);

  // Whether run() takes this product: 2 <= rows <= kSkinnyMaxRows, in % 8 == 0, x and w 16-byte aligned.
  static bool fits(const void* x, int rows, int in, const void* w);

  // y [rows, ldy] (its first `out` columns) = x [rows, in] · wᵀ + beta y, w [out, in]; beta 0 never reads y.
  template <typename T>
  void run(const T* x, int rows, int in, const T* w, int out, float* y, int ldy, float beta) const;

 private:
  cudaStream_t stream_;
  int smCount_ = 0;
  // Scratch of split products, written and read within one call (calls on one stream never overlap); mutable
  // because run() is const to its callers: it leaves no state they can see.
  mutable DeviceBuffer<float> partials_;
  // Per column of blocks, how many of its splits have finished; the last one resets it to 0.
  mutable DeviceBuffer<int> tickets_;
};

}  // namespace loraserve::cuda

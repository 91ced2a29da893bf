// The matrix products of batched decode steps (2 to kSkinnyMaxRows rows of x): y = x · wᵀ is then bound by reading
// w once, but cuBLAS's default kernels for such skinny shapes read it far slower than the copy bandwidth. Here w
// streams through the tensor cores as the mma's 16-row A side (16 output features per instruction) with the rows of x
// as its 8-column B side, so every weight element is read from memory exactly once per call, 16 bytes a load with a
// whole chunk's loads in flight. Products whose few output features would leave SMs idle split their `in` across
// blocks; the last block of a column of splits to finish sums the column's partial sums, always in split order, so
// the result does not depend on timing and no second kernel is launched.
//
// Why 64 rows: at 64 rows a weight element (2 bytes) feeds 128 FLOPs, still under the H200's ratio of GEMM rate to
// bandwidth (about 180 FLOPs a byte), so the product stays bound by the weight bytes; but each warp keeps 4
// float32 accumulators per 8 rows, and past 64 rows the registers and the re-reads of x from shared memory, which
// grow with the rows while the weight bytes do not, would take over. cuBLAS keeps the larger products.
#pragma once

#include <cuda_runtime.h>

#include "device_buffer.h"

namespace loraserve::cuda {

constexpr int kSkinnyMaxRows = 64;

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

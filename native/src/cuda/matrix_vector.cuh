// The matrix products of decode-sized batches: with a handful of rows, y = x · wᵀ is bound by reading w once,
// so each warp streams whole rows of w (16 bytes a lane, several loads in flight) against every row of x.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace loraserve::cuda {

constexpr int kSmallBatchRows = 8;

// y [rows, ldy] (its first `out` columns) = x · wᵀ + beta y, for 1 <= rows <= kSmallBatchRows; in % 8 == 0.
void smallBatchLinear(const __nv_bfloat16* x, int rows, int in, const __nv_bfloat16* w, int out, float* y, int ldy,
                      float beta, cudaStream_t stream);

}  // namespace loraserve::cuda

// RMSNorm of rows of the float32 residual stream into bf16 (the input of the next matrix product).
// The residual add itself is fused into the matrix products that produce o_proj and down_proj: they
// accumulate into the float32 stream (beta = 1), so this kernel reads the finished stream once.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace loraserve::cuda {

// out[i] = bf16(x[r] / sqrt(mean(x[r]^2) + eps) * weight) with r = rowIndex ? rowIndex[i] : i, for i < rows.
// rowIndex lets the final norm run only on the rows that need logits.
void rmsNorm(const float* x, const int32_t* rowIndex, const __nv_bfloat16* weight, __nv_bfloat16* out, int rows,
             int dim, float eps, cudaStream_t stream);

}  // namespace loraserve::cuda

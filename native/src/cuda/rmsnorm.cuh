// RMSNorm of rows of the float32 residual stream into the 16-bit type T (the input of the next matrix product).
// The residual add itself is fused into the matrix products that produce o_proj and down_proj: they
// accumulate into the float32 stream (beta = 1), so this kernel reads the finished stream once.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace loraserve::cuda {

// out[i] = T(x[r] / sqrt(mean(x[r]^2) + eps) * weight) with r = rowIndex ? rowIndex[i] : i, for i < rows.
// rowIndex lets the final norm run only on the rows that need logits.
template <typename T>
void rmsNorm(const float* x, const int32_t* rowIndex, const T* weight, T* out, int rows, int dim, float eps,
             cudaStream_t stream);

}  // namespace loraserve::cuda

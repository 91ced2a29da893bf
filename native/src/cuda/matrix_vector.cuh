// The matrix products of one-row steps (decode at batch 1): y = x · wᵀ is then a matrix-vector product bound by
// reading w once, so each warp streams whole rows of w (16 bytes a lane, several loads in flight) against x.
// From two rows on cuBLAS is faster: every extra row of x is re-read from cache once per row of w.
#pragma once

#include <cuda_runtime.h>

namespace loraserve::cuda {

// y [1, out] = x [1, in] · wᵀ + beta y; in % 8 == 0.
template <typename T>
void matrixVector(const T* x, int in, const T* w, int out, float* y, float beta, cudaStream_t stream);

}  // namespace loraserve::cuda

// The residual stream's first value: each row's token embedding, 16-bit table rows widened to float32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace loraserve::cuda {

// out [rows, hidden] float32 = table[tokens[r]].
template <typename T>
void embedRows(const T* table, const int32_t* tokens, int rows, int hidden, float* out, cudaStream_t stream);

}  // namespace loraserve::cuda

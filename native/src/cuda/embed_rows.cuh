// The residual stream's first value: each row's token embedding, bf16 table rows widened to float32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace loraserve::cuda {

// out [rows, hidden] float32 = table[tokens[r]].
void embedRows(const __nv_bfloat16* table, const int32_t* tokens, int rows, int hidden, float* out,
               cudaStream_t stream);

}  // namespace loraserve::cuda

// The residual stream's first value: each row's token embedding, 16-bit table rows widened to float32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace loraserve::cuda {

// out [rows, hidden] float32 = table[tokens[r] - firstToken] where table holds the rows of tokens
// [firstToken, firstToken + numTokens) (a tensor-parallel rank's vocabulary slice), else zero: the group's
// all-reduce then sums each row from the one rank that has it.
template <typename T>
void embedRows(const T* table, int firstToken, int numTokens, const int32_t* tokens, int rows, int hidden, float* out,
               cudaStream_t stream);

}  // namespace loraserve::cuda

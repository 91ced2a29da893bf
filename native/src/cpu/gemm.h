// The one matrix product of the model, in the layout of every torch Linear weight: y = alpha * x · wᵀ + beta * y
// with x [rows, in], w [out, in], y [rows, out], all row-major (OpenBLAS sgemm).
#pragma once

#include <cstdint>

namespace loraserve {

void linear(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, float* y, float alpha = 1.0f,
            float beta = 0.0f);

// How many threads OpenBLAS uses (process-wide).
void setGemmThreads(int threads);

}  // namespace loraserve

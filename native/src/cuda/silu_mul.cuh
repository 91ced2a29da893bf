// The Llama MLP's activation: silu(gate) * up, from the fused gate/up projection's output.
#pragma once

#include <cuda_runtime.h>

namespace loraserve::cuda {

// gateUp: [rows, 2 * width] float32, gate in the first half of each row, up in the second.
// out: [rows, width] in the 16-bit type T (the input of down_proj).
template <typename T>
void siluAndMul(const float* gateUp, T* out, int rows, int width, cudaStream_t stream);

}  // namespace loraserve::cuda

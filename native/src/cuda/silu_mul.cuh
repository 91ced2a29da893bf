// The Llama MLP's activation: silu(gate) * up, from the fused gate/up projection's output.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace loraserve::cuda {

// gateUp: [rows, 2 * width] float32, gate in the first half of each row, up in the second.
// out: [rows, width] bf16 (the input of down_proj).
void siluAndMul(const float* gateUp, __nv_bfloat16* out, int rows, int width, cudaStream_t stream);

}  // namespace loraserve::cuda

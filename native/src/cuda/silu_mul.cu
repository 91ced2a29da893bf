#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "half_types.cuh"
#include "silu_mul.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void siluAndMulKernel(const float* gateUp, T* out, int64_t total, int width) {
  waitForPreviousKernel();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / width;
    const int64_t col = i % width;
    const float gate = gateUp[row * 2 * width + col];
    const float up = gateUp[row * 2 * width + width + col];
    out[i] = fromFloat<T>(gate / (1.0f + expf(-gate)) * up);
  }
}

}  // namespace

template <typename T>
void siluAndMul(const float* gateUp, T* out, int rows, int width, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(rows) * width;
  if (total == 0) return;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  launchDependent("siluAndMulKernel", siluAndMulKernel<T>, static_cast<int>(blocks < 65536 ? blocks : 65536), kThreads, 0,
                  stream, gateUp, out, total, width);
}

template void siluAndMul(const float*, __half*, int, int, cudaStream_t);
template void siluAndMul(const float*, __nv_bfloat16*, int, int, cudaStream_t);

}  // namespace loraserve::cuda

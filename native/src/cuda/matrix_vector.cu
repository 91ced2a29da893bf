#include "block_reduce.cuh"
#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "half_types.cuh"
#include "matrix_vector.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kWarps = 8;

// One warp per output feature.
template <typename T>
__global__ void __launch_bounds__(kWarps * 32)
    matrixVectorKernel(const T* x, int in, const T* w, int out, float* y, float beta) {
  waitForPreviousKernel();
  const int lane = threadIdx.x & 31;
  const int feature = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (feature >= out) return;
  const T* wRow = w + static_cast<int64_t>(feature) * in;
  float acc = 0.0f;
#pragma unroll 4
  for (int k = lane * 8; k < in; k += 32 * 8) {
    float weights[8], inputs[8];
    load8(wRow + k, weights);
    load8(x + k, inputs);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc += weights[e] * inputs[e];
  }
  acc = warpSum(acc);
  // beta 0 must not read y: it may hold anything, NaN included.
  if (lane == 0) y[feature] = beta == 0.0f ? acc : acc + beta * y[feature];
}

}  // namespace

template <typename T>
void matrixVector(const T* x, int in, const T* w, int out, float* y, float beta, cudaStream_t stream) {
  launchDependent("matrixVectorKernel", matrixVectorKernel<T>, (out + kWarps - 1) / kWarps, kWarps * 32, 0, stream, x,
                  in, w, out, y, beta);
}

template void matrixVector(const __half*, int, const __half*, int, float*, float, cudaStream_t);
template void matrixVector(const __nv_bfloat16*, int, const __nv_bfloat16*, int, float*, float, cudaStream_t);

}  // namespace loraserve::cuda

#include <algorithm>

#include "block_reduce.cuh"
#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "half_types.cuh"
#include "rmsnorm.cuh"

namespace loraserve::cuda {

namespace {

// One block per row, wide enough that each thread reads one or a few 16-byte pieces: a decode step normalises a
// single row, and a block that walks it in many dependent rounds waits on memory latency, not bandwidth.
template <typename T>
__global__ void rmsNormKernel(const float* x, const int32_t* rowIndex, const T* weight, T* out, int dim, float eps) {
  waitForPreviousKernel();
  __shared__ float scratch[32];
  const int i = blockIdx.x;
  const float* row = x + static_cast<int64_t>(rowIndex ? rowIndex[i] : i) * dim;
  T* outRow = out + static_cast<int64_t>(i) * dim;
  // Rows of a width divisible by 4 go 4 values at a time (16-byte aligned: the buffers are).
  const bool byFour = dim % 4 == 0;
  float sumSquares = 0.0f;
  if (byFour) {
    const float4* row4 = reinterpret_cast<const float4*>(row);
    for (int c = threadIdx.x; c < dim / 4; c += blockDim.x) {
      const float4 v = row4[c];
      sumSquares += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int c = threadIdx.x; c < dim; c += blockDim.x) sumSquares += row[c] * row[c];
  }
  const float inverseRms = rsqrtf(blockSum(sumSquares, scratch) / static_cast<float>(dim) + eps);
  if (byFour) {
    const float4* row4 = reinterpret_cast<const float4*>(row);
    for (int c = threadIdx.x; c < dim / 4; c += blockDim.x) {
      const float4 v = row4[c];
      const float values[4] = {v.x, v.y, v.z, v.w};
      __align__(8) T normed[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) normed[e] = fromFloat<T>(values[e] * inverseRms * toFloat(weight[4 * c + e]));
      *reinterpret_cast<uint2*>(outRow + 4 * c) = *reinterpret_cast<const uint2*>(normed);
    }
  } else {
    for (int c = threadIdx.x; c < dim; c += blockDim.x) {
      outRow[c] = fromFloat<T>(row[c] * inverseRms * toFloat(weight[c]));
    }
  }
}

}  // namespace

template <typename T>
void rmsNorm(const float* x, const int32_t* rowIndex, const T* weight, T* out, int rows, int dim, float eps,
             cudaStream_t stream) {
  if (rows == 0) return;
  const int threads = std::clamp((dim / 4 + 31) / 32 * 32, 32, 1024);
  launchDependent("rmsNormKernel", rmsNormKernel<T>, rows, threads, 0, stream, x, rowIndex, weight, out, dim, eps);
}

template void rmsNorm(const float*, const int32_t*, const __half*, __half*, int, int, float, cudaStream_t);
template void rmsNorm(const float*, const int32_t*, const __nv_bfloat16*, __nv_bfloat16*, int, int, float,
                      cudaStream_t);

}  // namespace loraserve::cuda

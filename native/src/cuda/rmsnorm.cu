#include "block_reduce.cuh"
#include "cuda_check.h"
#include "half_types.cuh"
#include "rmsnorm.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void rmsNormKernel(const float* x, const int32_t* rowIndex, const T* weight, T* out, int dim, float eps) {
  __shared__ float scratch[32];
  const int i = blockIdx.x;
  const float* row = x + static_cast<int64_t>(rowIndex ? rowIndex[i] : i) * dim;
  float sumSquares = 0.0f;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) sumSquares += row[c] * row[c];
  const float inverseRms = rsqrtf(blockSum(sumSquares, scratch) / static_cast<float>(dim) + eps);
  T* outRow = out + static_cast<int64_t>(i) * dim;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) {
    outRow[c] = fromFloat<T>(row[c] * inverseRms * toFloat(weight[c]));
  }
}

}  // namespace

template <typename T>
void rmsNorm(const float* x, const int32_t* rowIndex, const T* weight, T* out, int rows, int dim, float eps,
             cudaStream_t stream) {
  if (rows == 0) return;
  rmsNormKernel<<<rows, kThreads, 0, stream>>>(x, rowIndex, weight, out, dim, eps);
  checkLaunch("rmsNormKernel");
}

template void rmsNorm(const float*, const int32_t*, const __half*, __half*, int, int, float, cudaStream_t);
template void rmsNorm(const float*, const int32_t*, const __nv_bfloat16*, __nv_bfloat16*, int, int, float,
                      cudaStream_t);

}  // namespace loraserve::cuda

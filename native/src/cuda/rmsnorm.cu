#include "block_reduce.cuh"
#include "cuda_check.h"
#include "rmsnorm.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void rmsNormKernel(const float* x, const int32_t* rowIndex, const __nv_bfloat16* weight,
                              __nv_bfloat16* out, int dim, float eps) {
  __shared__ float scratch[32];
  const int i = blockIdx.x;
  const float* row = x + static_cast<int64_t>(rowIndex ? rowIndex[i] : i) * dim;
  float sumSquares = 0.0f;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) sumSquares += row[c] * row[c];
  const float inverseRms = rsqrtf(blockSum(sumSquares, scratch) / static_cast<float>(dim) + eps);
  __nv_bfloat16* outRow = out + static_cast<int64_t>(i) * dim;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) {
    outRow[c] = __float2bfloat16(row[c] * inverseRms * __bfloat162float(weight[c]));
  }
}

}  // namespace

void rmsNorm(const float* x, const int32_t* rowIndex, const __nv_bfloat16* weight, __nv_bfloat16* out, int rows,
             int dim, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  rmsNormKernel<<<rows, kThreads, 0, stream>>>(x, rowIndex, weight, out, dim, eps);
  checkLaunch("rmsNormKernel");
}

}  // namespace loraserve::cuda

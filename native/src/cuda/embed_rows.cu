#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "embed_rows.cuh"
#include "half_types.cuh"

namespace loraserve::cuda {

namespace {

template <typename T>
__global__ void embedRowsKernel(const T* table, const int32_t* tokens, int firstToken, int numTokens, int hidden,
                                float* out) {
  waitForPreviousKernel();
  const int row = tokens[blockIdx.x] - firstToken;
  float* dst = out + static_cast<int64_t>(blockIdx.x) * hidden;
  if (row < 0 || row >= numTokens) {
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) dst[c] = 0.0f;
    return;
  }
  const T* src = table + static_cast<int64_t>(row) * hidden;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) dst[c] = toFloat(src[c]);
}

}  // namespace

template <typename T>
void embedRows(const T* table, int firstToken, int numTokens, const int32_t* tokens, int rows, int hidden, float* out,
               cudaStream_t stream) {
  if (rows == 0) return;
  // Wide blocks: a decode step embeds one row, and a narrow block would walk it in many dependent rounds.
  launchDependent("embedRowsKernel", embedRowsKernel<T>, rows, 1024, 0, stream, table, tokens, firstToken, numTokens,
                  hidden, out);
}

template void embedRows(const __half*, int, int, const int32_t*, int, int, float*, cudaStream_t);
template void embedRows(const __nv_bfloat16*, int, int, const int32_t*, int, int, float*, cudaStream_t);

}  // namespace loraserve::cuda

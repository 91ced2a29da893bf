#include "cuda_check.h"
#include "embed_rows.cuh"

namespace loraserve::cuda {

namespace {

__global__ void embedRowsKernel(const __nv_bfloat16* table, const int32_t* tokens, int hidden, float* out) {
  const __nv_bfloat16* src = table + static_cast<int64_t>(tokens[blockIdx.x]) * hidden;
  float* dst = out + static_cast<int64_t>(blockIdx.x) * hidden;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) dst[c] = __bfloat162float(src[c]);
}

}  // namespace

void embedRows(const __nv_bfloat16* table, const int32_t* tokens, int rows, int hidden, float* out,
               cudaStream_t stream) {
  if (rows == 0) return;
  embedRowsKernel<<<rows, 256, 0, stream>>>(table, tokens, hidden, out);
  checkLaunch("embedRowsKernel");
}

}  // namespace loraserve::cuda

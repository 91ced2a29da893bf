#include "cuda_check.h"
#include "rope_kv_write.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kThreads = 128;

__global__ void ropeAndWriteKvKernel(const float* qkv, const int32_t* positions, const int32_t* cacheSlots,
                                     const float* invFreq, __nv_bfloat16* q, __nv_bfloat16* kCache,
                                     __nv_bfloat16* vCache, RopeKvShape shape) {
  const int row = blockIdx.x;
  const int d = shape.headDim;
  const int half = d / 2;
  const int heads = shape.numHeads + shape.numKvHeads;  // heads that rotate: q's, then k's
  const float* in = qkv + static_cast<int64_t>(row) * (shape.numHeads + 2 * shape.numKvHeads) * d;
  const float position = static_cast<float>(positions[row]);
  const int64_t cacheRow = static_cast<int64_t>(cacheSlots[row]) * shape.numKvHeads * d;
  for (int idx = threadIdx.x; idx < heads * half; idx += blockDim.x) {
    const int head = idx / half;
    const int i = idx % half;
    // transformers forms the angle as a float32 product and takes accurate cos/sin of it.
    float sine, cosine;
    sincosf(position * invFreq[i], &sine, &cosine);
    const float x1 = in[head * d + i];
    const float x2 = in[head * d + i + half];
    const float y1 = x1 * cosine - x2 * sine;
    const float y2 = x2 * cosine + x1 * sine;
    __nv_bfloat16* out = head < shape.numHeads
                             ? q + (static_cast<int64_t>(row) * shape.numHeads + head) * d
                             : kCache + cacheRow + static_cast<int64_t>(head - shape.numHeads) * d;
    out[i] = __float2bfloat16(y1);
    out[i + half] = __float2bfloat16(y2);
  }
  const float* v = in + heads * d;
  for (int idx = threadIdx.x; idx < shape.numKvHeads * d; idx += blockDim.x) {
    vCache[cacheRow + idx] = __float2bfloat16(v[idx]);
  }
}

}  // namespace

void ropeAndWriteKv(const float* qkv, const int32_t* positions, const int32_t* cacheSlots, const float* invFreq,
                    __nv_bfloat16* q, __nv_bfloat16* kCache, __nv_bfloat16* vCache, int rows, RopeKvShape shape,
                    cudaStream_t stream) {
  if (rows == 0) return;
  ropeAndWriteKvKernel<<<rows, kThreads, 0, stream>>>(qkv, positions, cacheSlots, invFreq, q, kCache, vCache, shape);
  checkLaunch("ropeAndWriteKvKernel");
}

}  // namespace loraserve::cuda

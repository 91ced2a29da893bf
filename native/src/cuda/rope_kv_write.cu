#include "cuda_check.h"
#include "half_types.cuh"
#include "rope_kv_write.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void ropeAndWriteKvKernel(const float* qkv, const int32_t* positions, const int32_t* cacheSlots,
                                     const float* invFreq, T* q, T* kCache, T* vCache, RopeKvShape shape) {
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
    T* out = head < shape.numHeads
                             ? q + (static_cast<int64_t>(row) * shape.numHeads + head) * d
                             : kCache + cacheRow + static_cast<int64_t>(head - shape.numHeads) * d;
    out[i] = fromFloat<T>(y1);
    out[i + half] = fromFloat<T>(y2);
  }
  const float* v = in + heads * d;
  for (int idx = threadIdx.x; idx < shape.numKvHeads * d; idx += blockDim.x) {
    vCache[cacheRow + idx] = fromFloat<T>(v[idx]);
  }
}

}  // namespace

template <typename T>
void ropeAndWriteKv(const float* qkv, const int32_t* positions, const int32_t* cacheSlots, const float* invFreq, T* q,
                    T* kCache, T* vCache, int rows, RopeKvShape shape, cudaStream_t stream) {
  if (rows == 0) return;
  ropeAndWriteKvKernel<<<rows, kThreads, 0, stream>>>(qkv, positions, cacheSlots, invFreq, q, kCache, vCache, shape);
  checkLaunch("ropeAndWriteKvKernel");
}

template void ropeAndWriteKv(const float*, const int32_t*, const int32_t*, const float*, __half*, __half*, __half*, int,
                             RopeKvShape, cudaStream_t);
template void ropeAndWriteKv(const float*, const int32_t*, const int32_t*, const float*, __nv_bfloat16*,
                             __nv_bfloat16*, __nv_bfloat16*, int, RopeKvShape, cudaStream_t);

}  // namespace loraserve::cuda

#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "half_types.cuh"
#include "rope_kv_write.cuh"

namespace loraserve::cuda {

namespace {

// One block per (row, rotated head): thread i rotates the pair (i, i + headDim/2). A block per head rather than
// per row keeps a one-row decode step from waiting on one block's many dependent rounds.
template <typename T>
__global__ void ropeAndWriteKvKernel(const float* qkv, const int32_t* positions, const int32_t* cacheSlots,
                                     const float* invFreq, T* q, T* kCache, T* vCache, RopeKvShape shape) {
  waitForPreviousKernel();
  const int row = blockIdx.x;
  const int head = blockIdx.y;  // q heads, then k heads
  const int i = threadIdx.x;
  const int d = shape.headDim;
  const int half = d / 2;
  const float* in = qkv + static_cast<int64_t>(row) * (shape.numHeads + 2 * shape.numKvHeads) * d;
  // transformers forms the angle as a float32 product and takes accurate cos/sin of it.
  float sine, cosine;
  sincosf(static_cast<float>(positions[row]) * invFreq[i], &sine, &cosine);
  const float x1 = in[head * d + i];
  const float x2 = in[head * d + i + half];
  const int64_t cacheRow = static_cast<int64_t>(cacheSlots[row]) * shape.numKvHeads * d;
  T* out;
  if (head < shape.numHeads) {
    out = q + (static_cast<int64_t>(row) * shape.numHeads + head) * d;
  } else {
    const int kvHead = head - shape.numHeads;
    out = kCache + cacheRow + static_cast<int64_t>(kvHead) * d;
    // The k head's block also writes the v head of the same index, which is not rotated.
    const float* v = in + (shape.numHeads + shape.numKvHeads + kvHead) * d;
    T* vOut = vCache + cacheRow + static_cast<int64_t>(kvHead) * d;
    vOut[i] = fromFloat<T>(v[i]);
    vOut[i + half] = fromFloat<T>(v[i + half]);
  }
  out[i] = fromFloat<T>(x1 * cosine - x2 * sine);
  out[i + half] = fromFloat<T>(x2 * cosine + x1 * sine);
}

}  // namespace

template <typename T>
void ropeAndWriteKv(const float* qkv, const int32_t* positions, const int32_t* cacheSlots, const float* invFreq, T* q,
                    T* kCache, T* vCache, int rows, RopeKvShape shape, cudaStream_t stream) {
  if (rows == 0) return;
  const dim3 grid(rows, shape.numHeads + shape.numKvHeads);
  launchDependent("ropeAndWriteKvKernel", ropeAndWriteKvKernel<T>, grid, shape.headDim / 2, 0, stream, qkv, positions,
                  cacheSlots, invFreq, q, kCache, vCache, shape);
}

template void ropeAndWriteKv(const float*, const int32_t*, const int32_t*, const float*, __half*, __half*, __half*, int,
                             RopeKvShape, cudaStream_t);
template void ropeAndWriteKv(const float*, const int32_t*, const int32_t*, const float*, __nv_bfloat16*,
                             __nv_bfloat16*, __nv_bfloat16*, int, RopeKvShape, cudaStream_t);

}  // namespace loraserve::cuda

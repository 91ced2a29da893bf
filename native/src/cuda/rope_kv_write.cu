#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "half_types.cuh"
#include "rope_kv_write.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kThreads = 256;

// Two adjacent rotated pairs of one head per thread: (i, i + half) and (i + 1, i + 1 + half), i even, each
// half read as one float2 and written as one packed pair. One block covers kThreads / (headDim / 4) heads of a
// row (8 at head dim 128), so a prefill runs a few large blocks per row instead of one two-warp block per head,
// and a one-row decode step still spreads over several blocks.
template <typename T>
__global__ void ropeAndWriteKvKernel(const float* qkv, const int32_t* positions, const int32_t* cacheSlots,
                                     const float* invFreq, T* q, T* kCache, T* vCache, RopeKvShape shape) {
  waitForPreviousKernel();
  const int d = shape.headDim;
  const int half = d / 2;
  const int threadsPerHead = d / 4;
  const int unit = blockIdx.y * kThreads + threadIdx.x;
  const int head = unit / threadsPerHead;  // q heads, then k heads
  if (head >= shape.numHeads + shape.numKvHeads) return;
  const int i = 2 * (unit % threadsPerHead);
  const int row = blockIdx.x;
  const float* in = qkv + static_cast<int64_t>(row) * (shape.numHeads + 2 * shape.numKvHeads) * d;
  // transformers forms the angle as a float32 product and takes accurate cos/sin of it.
  const float position = static_cast<float>(positions[row]);
  const float2 frequency = *reinterpret_cast<const float2*>(invFreq + i);
  float sine0, cosine0, sine1, cosine1;
  sincosf(position * frequency.x, &sine0, &cosine0);
  sincosf(position * frequency.y, &sine1, &cosine1);
  const float2 x1 = *reinterpret_cast<const float2*>(in + head * d + i);
  const float2 x2 = *reinterpret_cast<const float2*>(in + head * d + i + half);
  const int64_t cacheRow = static_cast<int64_t>(cacheSlots[row]) * shape.numKvHeads * d;
  T* out;
  if (head < shape.numHeads) {
    out = q + (static_cast<int64_t>(row) * shape.numHeads + head) * d;
  } else {
    const int kvHead = head - shape.numHeads;
    out = kCache + cacheRow + static_cast<int64_t>(kvHead) * d;
    // The k head's threads also write the v head of the same index, which is not rotated.
    const float* v = in + (shape.numHeads + shape.numKvHeads + kvHead) * d;
    const float2 v1 = *reinterpret_cast<const float2*>(v + i);
    const float2 v2 = *reinterpret_cast<const float2*>(v + i + half);
    T* vOut = vCache + cacheRow + static_cast<int64_t>(kvHead) * d;
    *reinterpret_cast<uint32_t*>(vOut + i) = packPair<T>(v1.x, v1.y);
    *reinterpret_cast<uint32_t*>(vOut + i + half) = packPair<T>(v2.x, v2.y);
  }
  *reinterpret_cast<uint32_t*>(out + i) =
      packPair<T>(x1.x * cosine0 - x2.x * sine0, x1.y * cosine1 - x2.y * sine1);
  *reinterpret_cast<uint32_t*>(out + i + half) =
      packPair<T>(x2.x * cosine0 + x1.x * sine0, x2.y * cosine1 + x1.y * sine1);
}

}  // namespace

template <typename T>
void ropeAndWriteKv(const float* qkv, const int32_t* positions, const int32_t* cacheSlots, const float* invFreq, T* q,
                    T* kCache, T* vCache, int rows, RopeKvShape shape, cudaStream_t stream) {
  if (rows == 0) return;
  // Pairs of pairs need half the head dim even; every Llama head dim (64, 128, ...) is.
  if (shape.headDim % 4 != 0) {
    throw std::runtime_error("rope: head_dim " + std::to_string(shape.headDim) + " is not a multiple of 4");
  }
  const int units = (shape.numHeads + shape.numKvHeads) * (shape.headDim / 4);
  const dim3 grid(rows, (units + kThreads - 1) / kThreads);
  launchDependent("ropeAndWriteKvKernel", ropeAndWriteKvKernel<T>, grid, kThreads, 0, stream, qkv, positions,
                  cacheSlots, invFreq, q, kCache, vCache, shape);
}

template void ropeAndWriteKv(const float*, const int32_t*, const int32_t*, const float*, __half*, __half*, __half*, int,
                             RopeKvShape, cudaStream_t);
template void ropeAndWriteKv(const float*, const int32_t*, const int32_t*, const float*, __nv_bfloat16*,
                             __nv_bfloat16*, __nv_bfloat16*, int, RopeKvShape, cudaStream_t);

}  // namespace loraserve::cuda

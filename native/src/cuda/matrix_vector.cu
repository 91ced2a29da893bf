#include <stdexcept>
#include <string>

#include "block_reduce.cuh"
#include "cuda_check.h"
#include "small_batch_linear.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kWarps = 8;

__device__ inline void unpack8(const uint4& packed, float* out) {
  const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&packed);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(pairs[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// One warp per output feature.
template <int kRows>
__global__ void __launch_bounds__(kWarps * 32)
    smallBatchLinearKernel(const __nv_bfloat16* x, int in, const __nv_bfloat16* w, int out, float* y, int ldy,
                           float beta) {
  const int lane = threadIdx.x & 31;
  const int feature = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (feature >= out) return;
  const __nv_bfloat16* wRow = w + static_cast<int64_t>(feature) * in;
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
#pragma unroll 4
  for (int k = lane * 8; k < in; k += 32 * 8) {
    float weights[8];
    unpack8(*reinterpret_cast<const uint4*>(wRow + k), weights);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float inputs[8];
      unpack8(*reinterpret_cast<const uint4*>(x + static_cast<int64_t>(r) * in + k), inputs);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[r] += weights[e] * inputs[e];
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float sum = warpSum(acc[r]);
    if (lane == 0) {
      float* target = y + static_cast<int64_t>(r) * ldy + feature;
      // beta 0 must not read y: it may hold anything, NaN included.
      *target = beta == 0.0f ? sum : sum + beta * *target;
    }
  }
}

}  // namespace

void smallBatchLinear(const __nv_bfloat16* x, int rows, int in, const __nv_bfloat16* w, int out, float* y, int ldy,
                      float beta, cudaStream_t stream) {
  const int blocks = (out + kWarps - 1) / kWarps;
  constexpr int threads = kWarps * 32;
  switch (rows) {
    case 1: smallBatchLinearKernel<1><<<blocks, threads, 0, stream>>>(x, in, w, out, y, ldy, beta); break;
    case 2: smallBatchLinearKernel<2><<<blocks, threads, 0, stream>>>(x, in, w, out, y, ldy, beta); break;
    case 3: smallBatchLinearKernel<3><<<blocks, threads, 0, stream>>>(x, in, w, out, y, ldy, beta); break;
    case 4: smallBatchLinearKernel<4><<<blocks, threads, 0, stream>>>(x, in, w, out, y, ldy, beta); break;
    case 5: smallBatchLinearKernel<5><<<blocks, threads, 0, stream>>>(x, in, w, out, y, ldy, beta); break;
    case 6: smallBatchLinearKernel<6><<<blocks, threads, 0, stream>>>(x, in, w, out, y, ldy, beta); break;
    case 7: smallBatchLinearKernel<7><<<blocks, threads, 0, stream>>>(x, in, w, out, y, ldy, beta); break;
    case 8: smallBatchLinearKernel<8><<<blocks, threads, 0, stream>>>(x, in, w, out, y, ldy, beta); break;
    default: throw std::logic_error("smallBatchLinear: rows must be 1.." + std::to_string(kSmallBatchRows));
  }
  checkLaunch("smallBatchLinearKernel");
}

}  // namespace loraserve::cuda

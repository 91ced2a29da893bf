// 16-byte vector reads of bf16 data: eight values per load, the width at which a warp's loads coalesce best.
#pragma once

#include <cuda_bf16.h>

namespace loraserve::cuda {

__device__ inline void unpack8(const uint4& packed, float* out) {
  const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&packed);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(pairs[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// Eight consecutive bf16 values from a 16-byte-aligned address, as float.
__device__ inline void load8(const __nv_bfloat16* src, float* out) { unpack8(*reinterpret_cast<const uint4*>(src), out); }

}  // namespace loraserve::cuda

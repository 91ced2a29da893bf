// Rotary embedding of q and k (rotate-half pairs (i, i + headDim/2), as transformers' Llama), fused with the
// write of k and v into the paged KV cache, so the projections' output is read once.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace loraserve::cuda {

struct RopeKvShape {
  int numHeads = 0;    // this rank's q heads
  int numKvHeads = 0;  // this rank's kv heads
  int headDim = 0;
};

// qkv: [rows, (numHeads + 2 numKvHeads) * headDim] float32, q then k then v (the fused projection's output).
// positions: [rows]. cacheSlots: [rows], block * blockSize + offset of each row's position in the cache.
// invFreq: [headDim / 2] (rope_scaling already applied, rope_frequencies.h).
// Writes q: [rows, numHeads, headDim] and the caches' rows: [slot, numKvHeads, headDim], in the 16-bit type T.
template <typename T>
void ropeAndWriteKv(const float* qkv, const int32_t* positions, const int32_t* cacheSlots, const float* invFreq, T* q,
                    T* kCache, T* vCache, int rows, RopeKvShape shape, cudaStream_t stream);

}  // namespace loraserve::cuda

// Causal attention of a chunk of a sequence's tokens over its paged cache (prefill and chunked prefill):
// flash-attention style, 64 queries of one head per block against 64-key tiles with an online softmax, on the
// tensor cores (mma.sync, float16 or bfloat16); the score matrix never leaves registers. The chunk's own keys are already in
// the cache (ropeAndWriteKv runs first), so earlier chunks and this one are read the same way.
#pragma once

#include <cuda_runtime.h>

#include "paged_kv.cuh"

namespace loraserve::cuda {

constexpr int kPrefillTileRows = 64;

struct PrefillTile {
  int firstRow = 0;     // batch row of the tile's first query
  int numRows = 0;      // 1 .. kPrefillTileRows consecutive queries of one sequence
  int firstPos = 0;     // position of the first query; query i attends to positions [0, firstPos + i]
  int tableOffset = 0;  // where the sequence's block table starts in PagedKv::blockTables
};

// q: [rows, numHeads, headDim] in the 16-bit type T; out: the same shape. headDim: 16, 32, 64 or 128.
template <typename T>
void prefillAttention(const T* q, const PagedKv<T>& kv, const PrefillTile* tiles, int numTiles, T* out,
                      cudaStream_t stream);

}  // namespace loraserve::cuda

// Causal attention of a chunk of a sequence's tokens over its paged cache (prefill and chunked prefill):
// flash-attention style, 64 queries of one head per block against 64-key tiles with an online softmax, on the
// tensor cores (mma.sync bf16); the score matrix never leaves registers. The chunk's own keys are already in
// the cache (ropeAndWriteKv runs first), so earlier chunks and this one are read the same way.
#pragma once

#include <cuda_bf16.h>
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

// q: [rows, numHeads, headDim] bf16; out: the same shape. headDim: 16, 32, 64 or 128.
void prefillAttention(const __nv_bfloat16* q, const PagedKv& kv, const PrefillTile* tiles, int numTiles,
                      __nv_bfloat16* out, cudaStream_t stream);

}  // namespace loraserve::cuda

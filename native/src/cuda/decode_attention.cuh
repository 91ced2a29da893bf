// Attention of one new token per sequence over its cached keys (decode), for GQA and any block size.
// Each block takes one sequence, one kv head and all the q heads that share it, and one split of the
// positions; splits (flash-decoding) keep the GPU busy when the batch is small and the context long, and a
// second kernel merges them.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "paged_kv.cuh"

namespace loraserve::cuda {

struct DecodeItem {
  int row = 0;          // batch row of the query (its position is seqLen - 1)
  int seqLen = 0;       // keys to attend to: positions [0, seqLen)
  int tableOffset = 0;  // where the sequence's block table starts in PagedKv::blockTables
};

// The most q heads per kv head (GQA's group): the 16 rows of one tensor-core tile.
constexpr int kMaxDecodeGroup = 16;

// The float scratch that `splits` > 1 needs: 2 + headDim floats per (item, head, split).
int64_t decodeAttentionScratchFloats(int items, int numHeads, int headDim, int splits);

// q: [rows, numHeads, headDim] in the 16-bit type T; out: the same shape. scratch: decodeAttentionScratchFloats
// floats (may be null when splits == 1). headDim: 16, 32, 64 or 128 (what the backend supports); numHeads /
// numKvHeads at most kMaxDecodeGroup.
template <typename T>
void decodeAttention(const T* q, const PagedKv<T>& kv, const DecodeItem* items, int numItems, int splits,
                     float* scratch, T* out, cudaStream_t stream);

}  // namespace loraserve::cuda

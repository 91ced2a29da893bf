// The paged KV cache as the attention kernels see it. Each layer has a K and a V cache of
// [numBlocks * blockSize, numKvHeads, headDim] in the 16-bit type T; a sequence's position p lives in cache row
// blockTables[tableOffset + p / blockSize] * blockSize + p % blockSize (the TS block manager owns the ids).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace loraserve::cuda {

template <typename T>
struct PagedKv {
  const T* k = nullptr;
  const T* v = nullptr;
  const int32_t* blockTables = nullptr;  // every sequence's table, concatenated
  int blockSize = 0;
  int numHeads = 0;    // q heads (this rank)
  int numKvHeads = 0;  // kv heads (this rank)
  int headDim = 0;
};

template <typename T>
__device__ inline int64_t pagedRow(const PagedKv<T>& kv, int tableOffset, int position) {
  const int block = kv.blockTables[tableOffset + position / kv.blockSize];
  return static_cast<int64_t>(block) * kv.blockSize + position % kv.blockSize;
}

}  // namespace loraserve::cuda

// Multi-adapter LoRA for a heterogeneous batch: y += B_s (A_s x) for each row with its own adapter slot s,
// for every target that shares one input (q/k/v, gate/up, o, down) in one launch of each kernel.
//
// Layout (ideas from Punica's BGMV/SGMV and S-LoRA, arranged for a fused projection): each slot owns one
// device allocation with, for every layer and target, A as [maxRank, in] and B as [out, maxRank], zero-padded
// past the adapter's rank, so mixed ranks share one stride and one kernel. A and B are stored times powers of
// two that bring their largest values near the top of the 16-bit type's range (exact, and it keeps trained B,
// often below float16's smallest normal once scaled, at full precision); the expand multiplies by the scale
// that undoes them, the adapter's scaling included, in float32. The batch is cut into tiles of at most
// kLoraTileRows rows of one sequence (one slot): a decode row is a tile of one row (BGMV), a prefill chunk is
// a run of tiles that share A and B through the caches (SGMV). Tiles of base-only rows (slot -1) and targets
// the adapter leaves alone (rank 0) exit at once.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace loraserve::cuda {

constexpr int kLoraTileRows = 16;
constexpr int kMaxLoraGroupTargets = 3;
constexpr int kLoraShrinkSplits = 4;  // parts of the input dimension the shrink reads in parallel

struct LoraTile {
  int firstRow = 0;
  int numRows = 0;  // 1 .. kLoraTileRows
  int slot = -1;    // -1: the base model alone
};

// Device tables that describe every adapter slot; T is the 16-bit type the slots hold.
template <typename T>
struct LoraSlots {
  const T* const* weights = nullptr;  // [maxLoras]: each slot's allocation
  const int32_t* ranks = nullptr;     // [maxLoras][numLayers][kNumLoraTargets]: 0 where the target has no LoRA
  const float* scales = nullptr;      // [maxLoras][numLayers][kNumLoraTargets]: what B (A x) is multiplied by
  int numLayers = 0;
  int maxRank = 0;  // the stride of A rows and B columns; a multiple of 8
};

// The targets of one layer that read the same input, in the order their outputs sit in y's rows.
struct LoraGroup {
  int layer = 0;
  int numTargets = 0;
  int inDim = 0;
  int target[kMaxLoraGroupTargets] = {};     // LoraTarget index
  int outOffset[kMaxLoraGroupTargets] = {};  // first column of the target's output within a row of y
  int outDim[kMaxLoraGroupTargets] = {};
  int64_t aOffset[kMaxLoraGroupTargets] = {};  // element offsets inside a slot's allocation
  int64_t bOffset[kMaxLoraGroupTargets] = {};
};

// The float32 intermediate A x, as partial sums per split of the input: [rows, splits, targets, maxRank].
__host__ __device__ inline int loraIntermediateStride(int maxRank) {
  return kLoraShrinkSplits * kMaxLoraGroupTargets * maxRank;
}

// v[row, split, g, r] = A_g[r, part] . x[row, part] over the split's part of the input, for the tile's slot,
// every target g with a LoRA, r < rank. x: [rows, group.inDim]. maxTileRows: the most rows of any tile (1 in a
// decode step, which takes kernels with fewer registers).
template <typename T>
void loraShrink(const T* x, const LoraTile* tiles, int numTiles, int maxTileRows, const LoraSlots<T>& slots,
                const LoraGroup& group, float* v, cudaStream_t stream);

// y[row, outOffset_g + c] += sum_r B_g[c, r] sum_split v[row, split, g, r]; y: [rows, yStride] float32.
template <typename T>
void loraExpand(const float* v, const LoraTile* tiles, int numTiles, int maxTileRows, const LoraSlots<T>& slots,
                const LoraGroup& group, float* y, int yStride, cudaStream_t stream);

}  // namespace loraserve::cuda

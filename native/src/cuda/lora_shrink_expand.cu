#include "../lora_target.h"
#include "async_copy.cuh"
#include "block_reduce.cuh"
#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "half_types.cuh"
#include "lora_shrink_expand.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kShrinkWarps = 8;      // rank rows per shrink block: one warp each
constexpr int kExpandThreads = 128;
constexpr int kExpandPasses = 4;     // column runs each expand warp loads before it adds any up

// group.x[g] with a run-time g would copy the whole parameter struct to local memory for every thread (real
// memory traffic in kernels of thousands of blocks); compile-time indices keep it in the parameter bank.
template <typename V>
__device__ inline V pick(const V (&values)[kMaxLoraGroupTargets], int g) {
  V value = values[0];
#pragma unroll
  for (int i = 1; i < kMaxLoraGroupTargets; ++i) {
    if (g == i) value = values[i];
  }
  return value;
}

template <typename T>
__device__ inline int64_t targetIndex(const LoraSlots<T>& slots, int slot, int layer, int target) {
  return (static_cast<int64_t>(slot) * slots.numLayers + layer) * kNumLoraTargets + target;
}

template <typename T>
__device__ inline int targetRank(const LoraSlots<T>& slots, int slot, int layer, int target) {
  return slots.ranks[targetIndex(slots, slot, layer, target)];
}

// One block per (tile, target, split of the input, group of kShrinkWarps rank rows); each warp streams one rank
// row of A over its split, 16 bytes a lane and several loads in flight, against every row of the tile. A warp
// per rank row and the split of the input give a decode batch (one row per tile) enough warps to keep the
// memory system busy; the expand adds the splits' partial sums. kRows is the tile's row capacity: 1 for decode
// steps, whose accumulators then fit a few registers, kLoraTileRows otherwise.
//
// x is older than the base product launched just before (dependent_launch.cuh), so the shrink does its work at
// once, beside the product where the GPU has room, and waits for the product only before it ends: the expand
// after it adds into the product's output, and v was last read by an expand older still.
template <typename T, int kRows>
__global__ void __launch_bounds__(kShrinkWarps * 32)
    loraShrinkKernel(const T* x, const LoraTile* tiles, LoraSlots<T> slots, LoraGroup group, float* v) {
  letNextKernelStart();
  const LoraTile tile = tiles[blockIdx.x];
  const int g = blockIdx.y;
  const int split = blockIdx.z % kLoraShrinkSplits;
  const int r = (blockIdx.z / kLoraShrinkSplits) * kShrinkWarps + (threadIdx.x >> 5);
  const int rank = tile.slot < 0 ? 0 : targetRank(slots, tile.slot, group.layer, pick(group.target, g));
  // Ranks are padded to a multiple of 8 with zero rows of A, so the expand's 8-wide reads of v stay finite.
  if (r < (rank + 7) / 8 * 8) {
    const int lane = threadIdx.x & 31;
    const int in = group.inDim;
    const int chunk = (in / kLoraShrinkSplits + 7) / 8 * 8;
    const int kBegin = split * chunk;
    const int kEnd = min(in, kBegin + chunk);
    const T* aRow = slots.weights[tile.slot] + pick(group.aOffset, g) + static_cast<int64_t>(r) * in;
    float acc[kRows];
#pragma unroll
    for (int i = 0; i < kRows; ++i) acc[i] = 0.0f;
#pragma unroll 4
    for (int k = kBegin + lane * 8; k < kEnd; k += 32 * 8) {
      float weights[8];
      load8(aRow + k, weights);
#pragma unroll
      for (int i = 0; i < kRows; ++i) {
        if (i < tile.numRows) {
          float inputs[8];
          load8(x + static_cast<int64_t>(tile.firstRow + i) * in + k, inputs);
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[i] += weights[e] * inputs[e];
        }
      }
    }
    const int vStride = loraIntermediateStride(slots.maxRank);
    float* vSplit = v + split * kMaxLoraGroupTargets * slots.maxRank + g * slots.maxRank + r;
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      if (i < tile.numRows) {
        const float sum = warpSum(acc[i]);
        if (lane == 0) vSplit[static_cast<int64_t>(tile.firstRow + i) * vStride] = sum;
      }
    }
  }
  awaitPreviousKernel();
}

// One block per (tile, a run of output columns of the group; `columns` in all). B is [out, maxRank]: a column's
// B row is maxRank contiguous values, so `lanes` neighbouring lanes (maxRank / 8 rounded up to a power of two, at
// most 32) read one row together, 8 values each, and one warp instruction reads 32 * 8 contiguous values of B:
// coalesced, however small the rank. Each warp issues the loads of kExpandPasses column runs before it uses any,
// to keep enough bytes in flight for a kernel that reads each byte once; v comes from shared memory. The lanes of
// a column add their partial sums with shuffles.
template <typename T, int kRows>
__global__ void __launch_bounds__(kExpandThreads)
    loraExpandKernel(const float* v, const LoraTile* tiles, LoraSlots<T> slots, LoraGroup group, float* y,
                     int yStride, int columns, int lanes) {
  extern __shared__ float tileV[];  // [numRows][targets * maxRank]: the shrink's splits added up
  // Before the wait, what no kernel of the step writes: the tile, the slot's tables, and B, fetched into L2
  // while the shrink still runs.
  const LoraTile tile = tiles[blockIdx.x];
  const int lane = threadIdx.x & 31;
  const int sub = lane & (lanes - 1);        // which 8 values of each chunk of 8 * lanes in a B row
  const int columnsPerWarp = 32 / lanes;     // columns one warp instruction covers
  const int warpColumns = columnsPerWarp * kExpandPasses;
  const int firstColumn = (blockIdx.y * (kExpandThreads / 32) + (threadIdx.x >> 5)) * warpColumns + lane / lanes;
  int g[kExpandPasses];
  int rank[kExpandPasses];
  float scale[kExpandPasses];
#pragma unroll
  for (int p = 0; p < kExpandPasses; ++p) {
    const int column = firstColumn + p * columnsPerWarp;
    g[p] = 0;
#pragma unroll
    for (int t = 1; t < kMaxLoraGroupTargets; ++t) {
      if (t < group.numTargets && column >= group.outOffset[t]) g[p] = t;
    }
    const int64_t index = tile.slot < 0 ? 0 : targetIndex(slots, tile.slot, group.layer, pick(group.target, g[p]));
    rank[p] = tile.slot >= 0 && column < columns ? slots.ranks[index] : 0;
    scale[p] = rank[p] > 0 ? slots.scales[index] : 0.0f;
  }
  // The B row of pass p's column, from rank index r0 on.
  auto bRow = [&](int p, int r0) {
    const int column = firstColumn + p * columnsPerWarp;
    return slots.weights[tile.slot] + pick(group.bOffset, g[p]) +
           static_cast<int64_t>(column - pick(group.outOffset, g[p])) * slots.maxRank + r0;
  };
  for (int r0 = sub * 8; r0 < slots.maxRank; r0 += lanes * 8) {
#pragma unroll
    for (int p = 0; p < kExpandPasses; ++p) {
      if (r0 < rank[p]) prefetchToL2(bRow(p, r0));
    }
  }
  waitForPreviousKernel();  // v, and the product's output y
  if (tile.slot < 0) return;
  const int vStride = loraIntermediateStride(slots.maxRank);
  const int width = kMaxLoraGroupTargets * slots.maxRank;
  for (int idx = threadIdx.x; idx < tile.numRows * width; idx += blockDim.x) {
    const float* partials = v + static_cast<int64_t>(tile.firstRow + idx / width) * vStride + idx % width;
    float sum = 0.0f;
#pragma unroll
    for (int split = 0; split < kLoraShrinkSplits; ++split) sum += partials[split * width];
    tileV[idx] = sum;
  }
  __syncthreads();
  float acc[kExpandPasses][kRows];
#pragma unroll
  for (int p = 0; p < kExpandPasses; ++p) {
#pragma unroll
    for (int i = 0; i < kRows; ++i) acc[p][i] = 0.0f;
  }
  // Ranks past 8 * 32 take more than one chunk of a B row per lane.
  for (int r0 = sub * 8; r0 < slots.maxRank; r0 += lanes * 8) {
    float weights[kExpandPasses][8];
#pragma unroll
    for (int p = 0; p < kExpandPasses; ++p) {
      if (r0 < rank[p]) load8(bRow(p, r0), weights[p]);  // zero past the rank; the sums below skip the rest
    }
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      if (i < tile.numRows) {
#pragma unroll
        for (int p = 0; p < kExpandPasses; ++p) {
          if (r0 < rank[p]) {
            const float* vRow = tileV + i * width + g[p] * slots.maxRank + r0;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[p][i] += weights[p][e] * vRow[e];
          }
        }
      }
    }
  }
#pragma unroll
  for (int p = 0; p < kExpandPasses; ++p) {
    const int column = firstColumn + p * columnsPerWarp;
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      if (i < tile.numRows) {
        float sum = acc[p][i];
        for (int offset = lanes / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
        if (sub == 0 && rank[p] > 0) y[static_cast<int64_t>(tile.firstRow + i) * yStride + column] += scale[p] * sum;
      }
    }
  }
}

}  // namespace

template <typename T>
void loraShrink(const T* x, const LoraTile* tiles, int numTiles, int maxTileRows, const LoraSlots<T>& slots,
                const LoraGroup& group, float* v, cudaStream_t stream) {
  if (numTiles == 0) return;
  const int rankGroups = (slots.maxRank + kShrinkWarps - 1) / kShrinkWarps;
  const dim3 grid(numTiles, group.numTargets, kLoraShrinkSplits * rankGroups);
  launchDependent("loraShrinkKernel", maxTileRows == 1 ? loraShrinkKernel<T, 1> : loraShrinkKernel<T, kLoraTileRows>,
                  grid, kShrinkWarps * 32, 0, stream, x, tiles, slots, group, v);
}

template <typename T>
void loraExpand(const float* v, const LoraTile* tiles, int numTiles, int maxTileRows, const LoraSlots<T>& slots,
                const LoraGroup& group, float* y, int yStride, cudaStream_t stream) {
  if (numTiles == 0) return;
  const int last = group.numTargets - 1;
  const int columns = group.outOffset[last] + group.outDim[last];
  int lanes = 1;  // lanes per B row: a power of two, so a column's lanes add up with shuffles
  while (lanes < 32 && lanes * 8 < slots.maxRank) lanes *= 2;
  const int perBlock = (kExpandThreads / 32) * (32 / lanes) * kExpandPasses;
  const dim3 grid(numTiles, (columns + perBlock - 1) / perBlock);
  const size_t shared = sizeof(float) * maxTileRows * kMaxLoraGroupTargets * slots.maxRank;
  launchDependent("loraExpandKernel", maxTileRows == 1 ? loraExpandKernel<T, 1> : loraExpandKernel<T, kLoraTileRows>,
                  grid, kExpandThreads, shared, stream, v, tiles, slots, group, y, yStride, columns, lanes);
}

template void loraShrink(const __half*, const LoraTile*, int, int, const LoraSlots<__half>&, const LoraGroup&, float*,
                         cudaStream_t);
template void loraShrink(const __nv_bfloat16*, const LoraTile*, int, int, const LoraSlots<__nv_bfloat16>&,
                         const LoraGroup&, float*, cudaStream_t);
template void loraExpand(const float*, const LoraTile*, int, int, const LoraSlots<__half>&, const LoraGroup&, float*,
                         int, cudaStream_t);
template void loraExpand(const float*, const LoraTile*, int, int, const LoraSlots<__nv_bfloat16>&, const LoraGroup&,
                         float*, int, cudaStream_t);

}  // namespace loraserve::cuda

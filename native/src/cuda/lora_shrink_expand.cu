#include "../lora_target.h"
#include "block_reduce.cuh"
#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "half_types.cuh"
#include "lora_shrink_expand.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kShrinkWarps = 8;  // rank rows per shrink block: one warp each
constexpr int kExpandThreads = 128;
constexpr int kDecodeExpandPasses = 4;   // column runs each expand warp loads before it adds any: one-row tiles
constexpr int kPrefillExpandPasses = 4;  // tiles of up to kLoraTileRows rows

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

// Output columns a block of the expand covers: kPasses runs of 32 / lanes columns per warp.
template <int kPasses>
__host__ __device__ inline int expandBlockColumns(int lanes) {
  return (kExpandThreads / 32) * (32 / lanes) * kPasses;
}

// One block per (tile, a run of output columns of one target of the group; each target's runs start at its own
// first column, so a block's columns share one B, rank and scale). B is [out, maxRank]: a column's B row is
// maxRank contiguous values, so `lanes` neighbouring lanes (maxRank / 8 rounded up to a power of two, at most 32)
// read one row together, 8 values each, and one warp instruction reads 32 * 8 contiguous values of B: coalesced,
// however small the rank. The lanes of a column add their partial sums with shuffles.
//
// The kernel reads each byte of B once and does almost no arithmetic, so its speed is the bytes it keeps in
// flight against the memory's latency. Each warp issues the loads of kPasses column runs at once, and it issues
// them before the wait for the shrink: B is not written by any kernel of the step, so its loads overlap the
// shrink. After the wait only v (from L2) stands between the loads and the sums, and y takes the sums by
// reduction (a red.global that no thread waits for) instead of a read, an add and a write.
template <typename T, int kRows, int kPasses>
__global__ void __launch_bounds__(kExpandThreads, kRows == 1 ? 6 : 1)
    loraExpandKernel(const float* v, const LoraTile* tiles, LoraSlots<T> slots, LoraGroup group, float* y,
                     int yStride, int lanes) {
  extern __shared__ float tileV[];  // [numRows][targets * maxRank]: the shrink's splits added up
  const LoraTile tile = tiles[blockIdx.x];
  const int blockColumns = expandBlockColumns<kPasses>(lanes);
  int g = 0;           // the block's target
  int firstBlock = 0;  // the target's first block
#pragma unroll
  for (int t = 0; t + 1 < kMaxLoraGroupTargets; ++t) {
    const int blocks = (group.outDim[t] + blockColumns - 1) / blockColumns;
    if (g == t && t + 1 < group.numTargets && static_cast<int>(blockIdx.y) >= firstBlock + blocks) {
      g = t + 1;
      firstBlock += blocks;
    }
  }
  const int64_t index = tile.slot < 0 ? 0 : targetIndex(slots, tile.slot, group.layer, pick(group.target, g));
  const int rank = tile.slot < 0 ? 0 : slots.ranks[index];
  const int lane = threadIdx.x & 31;
  const int sub = lane & (lanes - 1);     // which 8 values of each chunk of 8 * lanes in a B row
  const int columnsPerWarp = 32 / lanes;  // columns one warp instruction covers
  const int outDim = pick(group.outDim, g);
  // Pass p's column within the target.
  const int firstColumn = (blockIdx.y - firstBlock) * blockColumns + (threadIdx.x >> 5) * columnsPerWarp * kPasses +
                          lane / lanes;
  auto column = [&](int p) { return firstColumn + p * columnsPerWarp; };
  const T* b = rank > 0 ? slots.weights[tile.slot] + pick(group.bOffset, g) : nullptr;
  // Pass p's 8 values of B from rank index r0 on, raw: converted only when they are used, so kPasses loads in
  // flight cost 4 registers each. Zero past the rank, where the sums below add nothing.
  auto loadB = [&](int r0, uint4 (&raw)[kPasses]) {
#pragma unroll
    for (int p = 0; p < kPasses; ++p) {
      raw[p] = make_uint4(0, 0, 0, 0);
      if (r0 < rank && column(p) < outDim) {
        raw[p] = *reinterpret_cast<const uint4*>(b + static_cast<int64_t>(column(p)) * slots.maxRank + r0);
      }
    }
  };
  uint4 raw[kPasses];
  loadB(sub * 8, raw);
  waitForPreviousKernel();  // v, and the product's output y
  if (rank == 0) return;
  const float scale = slots.scales[index];
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
  float* yTarget = y + static_cast<int64_t>(tile.firstRow) * yStride + pick(group.outOffset, g);
  // Ranks past 8 * 32 take more than one chunk of a B row per lane (the first one was loaded before the wait),
  // and each chunk adds its own part to y: nothing is carried from one chunk to the next but the loads.
  for (int r0 = sub * 8; r0 < slots.maxRank; r0 += lanes * 8) {
    if (r0 != sub * 8) loadB(r0, raw);
#pragma unroll 1
    for (int i = 0; i < kRows; ++i) {
      if (i < tile.numRows) {
        float vRow[8];  // the row's v at the lane's 8 rank indices, the same for every pass
#pragma unroll
        for (int e = 0; e < 8; ++e) vRow[e] = tileV[i * width + g * slots.maxRank + r0 + e];
#pragma unroll
        for (int p = 0; p < kPasses; ++p) {
          const T* values = reinterpret_cast<const T*>(&raw[p]);
          float sum = 0.0f;
#pragma unroll
          for (int e = 0; e < 8; ++e) sum += toFloat(values[e]) * vRow[e];
          for (int offset = lanes / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
          // One thread adds each chunk's part of an element, in order, so the sum's rounding is fixed.
          if (sub == 0 && r0 < rank && column(p) < outDim) {
            atomicAdd(yTarget + static_cast<int64_t>(i) * yStride + column(p), scale * sum);
          }
        }
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

// kPasses per warp: decode tiles (one row) keep many loads in flight; a prefill tile's 16 rows of sums leave room
// for fewer.
template <typename T, int kRows, int kPasses>
void launchExpand(const float* v, const LoraTile* tiles, int numTiles, const LoraSlots<T>& slots,
                  const LoraGroup& group, float* y, int yStride, cudaStream_t stream) {
  int lanes = 1;  // lanes per B row: a power of two, so a column's lanes add up with shuffles
  while (lanes < 32 && lanes * 8 < slots.maxRank) lanes *= 2;
  const int blockColumns = expandBlockColumns<kPasses>(lanes);
  int blocks = 0;
  for (int t = 0; t < group.numTargets; ++t) blocks += (group.outDim[t] + blockColumns - 1) / blockColumns;
  const size_t shared = sizeof(float) * kRows * kMaxLoraGroupTargets * slots.maxRank;
  launchDependent("loraExpandKernel", loraExpandKernel<T, kRows, kPasses>, dim3(numTiles, blocks), kExpandThreads,
                  shared, stream, v, tiles, slots, group, y, yStride, lanes);
}

template <typename T>
void loraExpand(const float* v, const LoraTile* tiles, int numTiles, int maxTileRows, const LoraSlots<T>& slots,
                const LoraGroup& group, float* y, int yStride, cudaStream_t stream) {
  if (numTiles == 0) return;
  if (maxTileRows == 1) {
    launchExpand<T, 1, kDecodeExpandPasses>(v, tiles, numTiles, slots, group, y, yStride, stream);
  } else {
    launchExpand<T, kLoraTileRows, kPrefillExpandPasses>(v, tiles, numTiles, slots, group, y, yStride, stream);
  }
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

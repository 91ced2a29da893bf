#include <cmath>
#include <stdexcept>
#include <string>

#include "block_reduce.cuh"
#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "decode_attention.cuh"
#include "half_types.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kMaxGroup = 8;
constexpr float kLog2e = 1.4426950408889634f;

// Scores are kept in the log2 domain (scaled by log2 e) so each exponential is one exp2f.
__device__ inline float rescale(float oldMax, float newMax) {
  return oldMax == -INFINITY ? 0.0f : exp2f(oldMax - newMax);
}

// A lane's kPerLane consecutive 16-bit elements in one load (2, 4 or 8 bytes: the address is aligned to it).
template <int kPerLane>
struct LaneBits;
template <>
struct LaneBits<1> { using type = unsigned short; };
template <>
struct LaneBits<2> { using type = unsigned int; };
template <>
struct LaneBits<4> { using type = uint2; };

// Aligned as its load, which is stored into it whole.
template <int kPerLane, typename T>
struct alignas(sizeof(typename LaneBits<kPerLane>::type)) LaneRow {
  T values[kPerLane];
};

template <int kPerLane, typename T>
__device__ inline LaneRow<kPerLane, T> loadLane(const T* src) {
  using Bits = typename LaneBits<kPerLane>::type;
  const Bits bits = *reinterpret_cast<const Bits*>(src);
  LaneRow<kPerLane, T> row;
  *reinterpret_cast<Bits*>(row.values) = bits;
  return row;
}

// Each lane holds kPerLane consecutive elements of the head dimension: headDim = 32 * kPerLane, or fewer
// (head_dim 16) with the upper lanes idle. Each warp reads kTile (8) positions at once (their loads all in flight
// before the first score is needed: one position at a time left the K/V reads latency-bound, at 0.18 of the
// bandwidth at batch 32, measured with ncu), scores them with kTile independent warp sums, and folds the tile
// into its running softmax with one rescale.
template <int kPerLane, typename T>
__global__ void __launch_bounds__(kWarps * 32)
    decodeAttentionKernel(const T* q, PagedKv<T> kv, const DecodeItem* items, float scaleLog2, float* scratch,
                          T* out) {
  waitForPreviousKernel();
  constexpr int kDim = 32 * kPerLane;
  // Positions a warp reads at once: 8 keys and values per lane fit in registers beside the group's queries and sums.
  constexpr int kTile = 8;
  __shared__ float warpState[kWarps][kMaxGroup][kDim + 2];
  const int dim = kv.headDim;
  const DecodeItem item = items[blockIdx.x];
  const int kvHead = blockIdx.y;
  const int split = blockIdx.z;
  const int splits = gridDim.z;
  const int group = kv.numHeads / kv.numKvHeads;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const bool active = lane * kPerLane < dim;

  float query[kMaxGroup][kPerLane];
  float acc[kMaxGroup][kPerLane];
  float runningMax[kMaxGroup];
  float runningSum[kMaxGroup];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    runningMax[g] = -INFINITY;
    runningSum[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) acc[g][e] = 0.0f;
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) query[g][e] = 0.0f;
    if (g < group && active) {
      const LaneRow<kPerLane, T> row = loadLane<kPerLane>(
          q + (static_cast<int64_t>(item.row) * kv.numHeads + kvHead * group + g) * dim + lane * kPerLane);
#pragma unroll
      for (int e = 0; e < kPerLane; ++e) query[g][e] = toFloat(row.values[e]);
    }
  }

  const int chunk = (item.seqLen + splits - 1) / splits;
  const int begin = split * chunk;
  const int end = min(item.seqLen, begin + chunk);
  // Warp w takes the tiles that start at begin + (w + kWarps * i) * kTile.
  for (int tileStart = begin + warp * kTile; tileStart < end; tileStart += kWarps * kTile) {
    // Positions past the end read the last one again (a row of this sequence, so finite values) and score
    // -inf. The block-table reads all go out before the K/V reads that need them, and no branch sits between
    // loads, so the compiler keeps every one of them in flight at once.
    LaneRow<kPerLane, T> key[kTile], value[kTile];
    if (active) {
      int64_t offset[kTile];
#pragma unroll
      for (int j = 0; j < kTile; ++j) {
        const int position = min(tileStart + j, end - 1);
        offset[j] = (pagedRow(kv, item.tableOffset, position) * kv.numKvHeads + kvHead) * dim + lane * kPerLane;
      }
#pragma unroll
      for (int j = 0; j < kTile; ++j) {
        key[j] = loadLane<kPerLane>(kv.k + offset[j]);
        value[j] = loadLane<kPerLane>(kv.v + offset[j]);
      }
    } else {
#pragma unroll
      for (int j = 0; j < kTile; ++j) {
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) key[j].values[e] = value[j].values[e] = fromFloat<T>(0.0f);
      }
    }
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= group) break;
      float score[kTile];
#pragma unroll
      for (int j = 0; j < kTile; ++j) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) dot += query[g][e] * toFloat(key[j].values[e]);
        score[j] = dot;
      }
      // The kTile sums interleaved: independent shuffles, so one's latency hides the others'.
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) {
#pragma unroll
        for (int j = 0; j < kTile; ++j) score[j] += __shfl_xor_sync(0xffffffffu, score[j], offset);
      }
      float tileMax = -INFINITY;
#pragma unroll
      for (int j = 0; j < kTile; ++j) {
        score[j] = tileStart + j < end ? score[j] * scaleLog2 : -INFINITY;
        tileMax = fmaxf(tileMax, score[j]);
      }
      // The tile's first position is < end, so newMax is finite.
      const float newMax = fmaxf(runningMax[g], tileMax);
      const float correction = rescale(runningMax[g], newMax);
      runningSum[g] *= correction;
#pragma unroll
      for (int e = 0; e < kPerLane; ++e) acc[g][e] *= correction;
#pragma unroll
      for (int j = 0; j < kTile; ++j) {
        const float p = exp2f(score[j] - newMax);  // exactly 0 for the positions past the end
        runningSum[g] += p;
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) acc[g][e] += p * toFloat(value[j].values[e]);
      }
      runningMax[g] = newMax;
    }
  }

#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g >= group) break;
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) warpState[warp][g][lane * kPerLane + e] = acc[g][e];
    if (lane == 0) {
      warpState[warp][g][kDim] = runningMax[g];
      warpState[warp][g][kDim + 1] = runningSum[g];
    }
  }
  __syncthreads();

  // Merge the warps: thread t takes (head g, element d) pairs.
  for (int idx = threadIdx.x; idx < group * dim; idx += blockDim.x) {
    const int g = idx / dim;
    const int d = idx % dim;
    float maxAll = -INFINITY;
    for (int w = 0; w < kWarps; ++w) maxAll = fmaxf(maxAll, warpState[w][g][kDim]);
    float sum = 0.0f, value = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      const float weight = rescale(warpState[w][g][kDim], maxAll);
      sum += warpState[w][g][kDim + 1] * weight;
      value += warpState[w][g][d] * weight;
    }
    const int head = kvHead * group + g;
    if (splits == 1) {
      out[(static_cast<int64_t>(item.row) * kv.numHeads + head) * dim + d] =
          fromFloat<T>(sum > 0.0f ? value / sum : 0.0f);
    } else {
      float* partial = scratch + ((static_cast<int64_t>(blockIdx.x) * kv.numHeads + head) * splits + split) * (dim + 2);
      partial[d] = value;
      if (d == 0) {
        partial[dim] = maxAll;
        partial[dim + 1] = sum;
      }
    }
  }
}

template <typename T>
__global__ void mergeSplitsKernel(PagedKv<T> kv, const DecodeItem* items, int splits, const float* scratch, T* out) {
  waitForPreviousKernel();
  const int head = blockIdx.y;
  const int dim = kv.headDim;
  const float* partials = scratch + (static_cast<int64_t>(blockIdx.x) * kv.numHeads + head) * splits * (dim + 2);
  float maxAll = -INFINITY;
  for (int s = 0; s < splits; ++s) maxAll = fmaxf(maxAll, partials[s * (dim + 2) + dim]);
  for (int d = threadIdx.x; d < dim; d += blockDim.x) {
    float sum = 0.0f, value = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float* partial = partials + s * (dim + 2);
      const float weight = rescale(partial[dim], maxAll);
      sum += partial[dim + 1] * weight;
      value += partial[d] * weight;
    }
    out[(static_cast<int64_t>(items[blockIdx.x].row) * kv.numHeads + head) * dim + d] =
        fromFloat<T>(sum > 0.0f ? value / sum : 0.0f);
  }
}

}  // namespace

int64_t decodeAttentionScratchFloats(int items, int numHeads, int headDim, int splits) {
  return static_cast<int64_t>(items) * numHeads * splits * (headDim + 2);
}

template <typename T>
void decodeAttention(const T* q, const PagedKv<T>& kv, const DecodeItem* items, int numItems, int splits,
                     float* scratch, T* out, cudaStream_t stream) {
  if (numItems == 0) return;
  if (kv.numHeads % kv.numKvHeads != 0 || kv.numHeads / kv.numKvHeads > kMaxGroup) {
    throw std::runtime_error("decode attention: " + std::to_string(kv.numHeads) + " q heads per " +
                             std::to_string(kv.numKvHeads) + " kv heads is not supported (at most 8 per kv head)");
  }
  const float scaleLog2 = kLog2e / std::sqrt(static_cast<float>(kv.headDim));
  const dim3 grid(numItems, kv.numKvHeads, splits);
  auto launch = [&](auto kernel) {
    launchDependent("decodeAttentionKernel", kernel, grid, kWarps * 32, 0, stream, q, kv, items, scaleLog2, scratch, out);
  };
  switch (kv.headDim) {
    case 16:
    case 32: launch(decodeAttentionKernel<1, T>); break;
    case 64: launch(decodeAttentionKernel<2, T>); break;
    case 128: launch(decodeAttentionKernel<4, T>); break;
    default: throw std::runtime_error("decode attention: head_dim " + std::to_string(kv.headDim) + " is not supported");
  }
  if (splits > 1) {
    launchDependent("mergeSplitsKernel", mergeSplitsKernel<T>, dim3(numItems, kv.numHeads), 128, 0, stream, kv, items,
                    splits, scratch, out);
  }
}

template void decodeAttention(const __half*, const PagedKv<__half>&, const DecodeItem*, int, int, float*, __half*,
                              cudaStream_t);
template void decodeAttention(const __nv_bfloat16*, const PagedKv<__nv_bfloat16>&, const DecodeItem*, int, int,
                              float*, __nv_bfloat16*, cudaStream_t);

}  // namespace loraserve::cuda

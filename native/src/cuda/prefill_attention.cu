#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "async_copy.cuh"
#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "half_types.cuh"
#include "online_softmax.cuh"
#include "prefill_attention.cuh"
#include "shared_memory_opt_in.cuh"
#include "tensor_core_mma.cuh"

namespace loraserve::cuda {

namespace {

// Each warp owns kRowTiles 16-row mma tiles of queries, so every K and V fragment it reads from shared memory
// feeds kRowTiles products (with one, each 512-byte ldmatrix feeds two mmas). The three figures trade that reuse
// against registers: 1 tile a warp, 64 keys a tile and 3 blocks a multiprocessor fit 168 registers with no spills
// (head dim 128, float16), the measured setting; 2 tiles (kPrefillTileRows 128) fit 252 at 16 keys and 2 blocks,
// and spill at 32 keys (docs/performance.md, prefill).
constexpr int kRowTiles = 1;
constexpr int kWarps = kPrefillTileRows / (16 * kRowTiles);
constexpr int kKeys = 64;  // keys per tile
constexpr int kPad = 8;    // elements of padding per shared row: conflict-free ldmatrix
constexpr float kLog2e = 1.4426950408889634f;
static_assert(kWarps * 16 * kRowTiles == kPrefillTileRows, "a tile's rows are its warps' mma tiles");
constexpr int kBlocksPerMultiprocessor = 3;

template <int kDim>
constexpr int kRow = kDim + kPad;
// One stage: kKeys rows of K, then kKeys rows of V; two stages, one landing while the block computes the other.
template <int kDim>
constexpr int kStageElements = 2 * kKeys * kRow<kDim>;
template <int kDim>
constexpr size_t kSharedBytes = 2 * kStageElements<kDim> * 2;

// One block per (q head, tile of queries). The tiles run last first: a tile later in its sequence has more keys
// to read (causal), and starting the longest ones first keeps them off the end of the grid. The K/V tiles stream
// through two shared stages with cp.async, the next landing while the block scores the current one.
template <int kDim, typename T>
__global__ void __launch_bounds__(kWarps * 32, kBlocksPerMultiprocessor)
    prefillAttentionKernel(const T* q, PagedKv<T> kv, const PrefillTile* tiles, float scaleLog2, T* out) {
  waitForPreviousKernel();
  extern __shared__ __align__(16) unsigned char shared[];
  T* const stages = reinterpret_cast<T*>(shared);
  const PrefillTile tile = tiles[gridDim.y - 1 - blockIdx.y];
  const int head = blockIdx.x;
  const int kvHead = head / (kv.numHeads / kv.numKvHeads);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int group = lane >> 2;
  const int quad = lane & 3;
  const int warpFirstRow = warp * 16 * kRowTiles;
  // This lane's two query rows of m tile mt: rowOf(mt, 0) and rowOf(mt, 1), 8 apart.
  auto rowOf = [&](int mt, int r) { return warpFirstRow + mt * 16 + group + 8 * r; };

  uint32_t queryFrag[kRowTiles][kDim / 16][4];
#pragma unroll
  for (int mt = 0; mt < kRowTiles; ++mt) {
    const int row0 = rowOf(mt, 0), row1 = rowOf(mt, 1);
    const T* q0 = q + ((static_cast<int64_t>(tile.firstRow) + row0) * kv.numHeads + head) * kDim;
    const T* q1 = q + ((static_cast<int64_t>(tile.firstRow) + row1) * kv.numHeads + head) * kDim;
    loadRowFragments<kDim>(q0, q1, row0 < tile.numRows, row1 < tile.numRows, quad, queryFrag[mt]);
  }

  float acc[kRowTiles][kDim / 8][4];
  float rowMax[kRowTiles][2], rowSum[kRowTiles][2];  // this lane's share of the sum; the quad's are added at the end
#pragma unroll
  for (int mt = 0; mt < kRowTiles; ++mt) {
#pragma unroll
    for (int dt = 0; dt < kDim / 8; ++dt) acc[mt][dt][0] = acc[mt][dt][1] = acc[mt][dt][2] = acc[mt][dt][3] = 0.0f;
    rowMax[mt][0] = rowMax[mt][1] = -INFINITY;
    rowSum[mt][0] = rowSum[mt][1] = 0.0f;
  }

  const int lastPos = tile.firstPos + tile.numRows - 1;
  const int warpLastPos = tile.firstPos + min(warpFirstRow + 16 * kRowTiles - 1, tile.numRows - 1);
  constexpr int kChunks = kDim / 8;  // 16-byte pieces of one key row
  const int keyTiles = lastPos / kKeys + 1;

  // Starts the copy of key tile t into stage t % 2 (keys past lastPos land as zeros).
  auto startTile = [&](int t) {
    T* keys = stages + (t % 2) * kStageElements<kDim>;
    T* values = keys + kKeys * kRow<kDim>;
    for (int c = threadIdx.x; c < kKeys * kChunks; c += blockDim.x) {
      const int key = c / kChunks;
      const int part = c % kChunks;
      const int position = t * kKeys + key;
      const bool inside = position <= lastPos;
      const int64_t offset =
          inside ? (pagedRow(kv, tile.tableOffset, position) * kv.numKvHeads + kvHead) * kDim + part * 8 : 0;
      copyToShared(keys + key * kRow<kDim> + part * 8, kv.k + offset, inside);
      copyToShared(values + key * kRow<kDim> + part * 8, kv.v + offset, inside);
    }
    commitCopies();
  };

  startTile(0);
  for (int t = 0; t < keyTiles; ++t) {
    const int keyStart = t * kKeys;
    if (t + 1 < keyTiles) {
      startTile(t + 1);  // its stage was last read in iteration t - 1, which every warp has left
      waitForCopyGroups<1>();
    } else {
      waitForCopies();
    }
    __syncthreads();  // every thread's copies of tile t have landed
    const T* keys = stages + (t % 2) * kStageElements<kDim>;
    const T* values = keys + kKeys * kRow<kDim>;
    if (keyStart <= warpLastPos) {  // causal: otherwise these keys all follow this warp's queries
      // S = Q K^T. K rows are B's columns as stored, so ldmatrix loads them untransposed: matrices
      // (keys +0-7 | +8-15 of a 16-key pair of score tiles) x (dims +0-7 | +8-15).
      float score[kRowTiles][kKeys / 8][4] = {};
      const int m = lane >> 3;
#pragma unroll
      for (int ks = 0; ks < kDim / 16; ++ks) {
#pragma unroll
        for (int j = 0; j < kKeys / 16; ++j) {
          uint32_t b[4];
          loadMatrices<false>(keys + (j * 16 + (m >> 1) * 8 + (lane & 7)) * kRow<kDim> + ks * 16 + (m & 1) * 8, b);
#pragma unroll
          for (int mt = 0; mt < kRowTiles; ++mt) {
            mma16816<T>(score[mt][2 * j], queryFrag[mt][ks], b[0], b[1]);
            mma16816<T>(score[mt][2 * j + 1], queryFrag[mt][ks], b[2], b[3]);
          }
        }
      }

#pragma unroll
      for (int mt = 0; mt < kRowTiles; ++mt) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int queryPos = tile.firstPos + rowOf(mt, r);
          onlineSoftmaxRow(score[mt], acc[mt], r, scaleLog2, rowMax[mt][r], rowSum[mt][r],
                           [&](int nt, int e) { return keyStart + nt * 8 + 2 * quad + e <= queryPos; });
        }
      }

      // The score accumulators of key tiles 2kk and 2kk+1 are exactly the A fragment of P for keys 16kk..16kk+15.
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        uint32_t p[kRowTiles][4];
#pragma unroll
        for (int mt = 0; mt < kRowTiles; ++mt) {
          p[mt][0] = packPair<T>(score[mt][2 * kk][0], score[mt][2 * kk][1]);
          p[mt][1] = packPair<T>(score[mt][2 * kk][2], score[mt][2 * kk][3]);
          p[mt][2] = packPair<T>(score[mt][2 * kk + 1][0], score[mt][2 * kk + 1][1]);
          p[mt][3] = packPair<T>(score[mt][2 * kk + 1][2], score[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dt = 0; dt < kDim / 8; dt += 2) {
          uint32_t b[4];
          loadMatrices<true>(values + (kk * 16 + (lane & 15)) * kRow<kDim> + dt * 8 + (lane >> 4) * 8, b);
#pragma unroll
          for (int mt = 0; mt < kRowTiles; ++mt) {
            mma16816<T>(acc[mt][dt], p[mt], b[0], b[1]);
            mma16816<T>(acc[mt][dt + 1], p[mt], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads();  // every warp is done with stage t % 2 before iteration t + 1 refills it
  }

#pragma unroll
  for (int mt = 0; mt < kRowTiles; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float sum = quadSum(rowSum[mt][r]);
      const int row = rowOf(mt, r);
      if (row >= tile.numRows) continue;
      const float inverse = sum > 0.0f ? 1.0f / sum : 0.0f;
      T* o = out + ((static_cast<int64_t>(tile.firstRow) + row) * kv.numHeads + head) * kDim;
#pragma unroll
      for (int dt = 0; dt < kDim / 8; ++dt) {
        *reinterpret_cast<uint32_t*>(o + dt * 8 + 2 * quad) =
            packPair<T>(acc[mt][dt][2 * r] * inverse, acc[mt][dt][2 * r + 1] * inverse);
      }
    }
  }
}

}  // namespace

template <typename T>
void prefillAttention(const T* q, const PagedKv<T>& kv, const PrefillTile* tiles, int numTiles, T* out,
                      cudaStream_t stream) {
  if (numTiles == 0) return;
  const float scaleLog2 = kLog2e / std::sqrt(static_cast<float>(kv.headDim));
  const dim3 grid(kv.numHeads, numTiles);
  auto launch = [&](auto dim) {
    constexpr int kDim = decltype(dim)::value;
    constexpr auto kernel = prefillAttentionKernel<kDim, T>;
    allowSharedBytes<kernel>(kSharedBytes<kDim>, "prefill attention shared memory");
    launchDependent("prefillAttentionKernel", kernel, grid, kWarps * 32, kSharedBytes<kDim>, stream, q, kv, tiles,
                    scaleLog2, out);
  };
  switch (kv.headDim) {
    case 16: launch(std::integral_constant<int, 16>{}); break;
    case 32: launch(std::integral_constant<int, 32>{}); break;
    case 64: launch(std::integral_constant<int, 64>{}); break;
    case 128: launch(std::integral_constant<int, 128>{}); break;
    default:
      throw std::runtime_error("prefill attention: head_dim " + std::to_string(kv.headDim) + " is not supported");
  }
}

template void prefillAttention(const __half*, const PagedKv<__half>&, const PrefillTile*, int, __half*, cudaStream_t);
template void prefillAttention(const __nv_bfloat16*, const PagedKv<__nv_bfloat16>&, const PrefillTile*, int,
                               __nv_bfloat16*, cudaStream_t);

}  // namespace loraserve::cuda

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "half_types.cuh"
#include "online_softmax.cuh"
#include "prefill_attention.cuh"
#include "tensor_core_mma.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kWarps = kPrefillTileRows / 16;  // each warp owns 16 query rows
constexpr int kKeys = 64;                      // keys per tile
constexpr int kPad = 8;                        // elements of padding per shared row: conflict-free fragment reads
constexpr float kLog2e = 1.4426950408889634f;

template <int kDim, typename T>
__global__ void __launch_bounds__(kWarps * 32)
    prefillAttentionKernel(const T* q, PagedKv<T> kv, const PrefillTile* tiles, float scaleLog2, T* out) {
  waitForPreviousKernel();
  __shared__ __align__(16) T keys[kKeys][kDim + kPad];
  __shared__ __align__(16) T values[kKeys][kDim + kPad];
  const PrefillTile tile = tiles[blockIdx.x];
  const int head = blockIdx.y;
  const int kvHead = head / (kv.numHeads / kv.numKvHeads);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int group = lane >> 2;
  const int quad = lane & 3;
  const int row0 = warp * 16 + group;  // this lane's two query rows in the tile: row0 and row0 + 8
  const int row1 = row0 + 8;

  uint32_t queryFrag[kDim / 16][4];
  {
    const T* q0 = q + ((static_cast<int64_t>(tile.firstRow) + row0) * kv.numHeads + head) * kDim;
    const T* q1 = q + ((static_cast<int64_t>(tile.firstRow) + row1) * kv.numHeads + head) * kDim;
    const bool valid0 = row0 < tile.numRows, valid1 = row1 < tile.numRows;
    loadRowFragments<kDim>(q0, q1, valid0, valid1, quad, queryFrag);
  }

  float acc[kDim / 8][4];
#pragma unroll
  for (int dt = 0; dt < kDim / 8; ++dt) acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.0f;
  float rowMax[2] = {-INFINITY, -INFINITY};
  float rowSum[2] = {0.0f, 0.0f};  // this lane's share; the quad's four shares are added at the end

  const int lastPos = tile.firstPos + tile.numRows - 1;
  const int warpLastPos = tile.firstPos + min(warp * 16 + 15, tile.numRows - 1);
  const int queryPos[2] = {tile.firstPos + row0, tile.firstPos + row1};
  constexpr int kChunks = kDim / 8;  // 16-byte pieces of one key row

  for (int keyStart = 0; keyStart <= lastPos; keyStart += kKeys) {
    __syncthreads();  // every warp is done with the previous tile
    for (int c = threadIdx.x; c < kKeys * kChunks; c += blockDim.x) {
      const int key = c / kChunks;
      const int part = c % kChunks;
      const int position = keyStart + key;
      uint4 k = make_uint4(0, 0, 0, 0), v = make_uint4(0, 0, 0, 0);
      if (position <= lastPos) {
        const int64_t offset = (pagedRow(kv, tile.tableOffset, position) * kv.numKvHeads + kvHead) * kDim + part * 8;
        k = *reinterpret_cast<const uint4*>(kv.k + offset);
        v = *reinterpret_cast<const uint4*>(kv.v + offset);
      }
      *reinterpret_cast<uint4*>(&keys[key][part * 8]) = k;
      *reinterpret_cast<uint4*>(&values[key][part * 8]) = v;
    }
    __syncthreads();
    if (keyStart > warpLastPos) continue;  // causal: these keys all follow this warp's queries

    float score[kKeys / 8][4];
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      score[nt][0] = score[nt][1] = score[nt][2] = score[nt][3] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < kDim / 16; ++ks) {
        const T* k = &keys[nt * 8 + group][ks * 16 + 2 * quad];
        mma16816<T>(score[nt], queryFrag[ks], load2(k), load2(k + 8));
      }
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
      onlineSoftmaxRow(score, acc, r, scaleLog2, rowMax[r], rowSum[r],
                       [&](int nt, int e) { return keyStart + nt * 8 + 2 * quad + e <= queryPos[r]; });
    }

    // The score accumulators of key tiles 2kk and 2kk+1 are exactly the A fragment of P for keys 16kk..16kk+15.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const uint32_t p[4] = {packPair<T>(score[2 * kk][0], score[2 * kk][1]),
                             packPair<T>(score[2 * kk][2], score[2 * kk][3]),
                             packPair<T>(score[2 * kk + 1][0], score[2 * kk + 1][1]),
                             packPair<T>(score[2 * kk + 1][2], score[2 * kk + 1][3])};
#pragma unroll
      for (int dt = 0; dt < kDim / 8; dt += 2) {
        uint32_t b[4];
        loadMatrices<true>(&values[kk * 16 + (lane & 15)][dt * 8 + (lane >> 4) * 8], b);
        mma16816<T>(acc[dt], p, b[0], b[1]);
        mma16816<T>(acc[dt + 1], p, b[2], b[3]);
      }
    }
  }

  for (float& sum : rowSum) sum = quadSum(sum);
  const int rows[2] = {row0, row1};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (rows[r] >= tile.numRows) continue;
    const float inverse = rowSum[r] > 0.0f ? 1.0f / rowSum[r] : 0.0f;
    T* o = out + ((static_cast<int64_t>(tile.firstRow) + rows[r]) * kv.numHeads + head) * kDim;
#pragma unroll
    for (int dt = 0; dt < kDim / 8; ++dt) {
      *reinterpret_cast<uint32_t*>(o + dt * 8 + 2 * quad) =
          packPair<T>(acc[dt][2 * r] * inverse, acc[dt][2 * r + 1] * inverse);
    }
  }
}

}  // namespace

template <typename T>
void prefillAttention(const T* q, const PagedKv<T>& kv, const PrefillTile* tiles, int numTiles, T* out,
                      cudaStream_t stream) {
  if (numTiles == 0) return;
  const float scaleLog2 = kLog2e / std::sqrt(static_cast<float>(kv.headDim));
  const dim3 grid(numTiles, kv.numHeads);
  constexpr int threads = kWarps * 32;
  auto launch = [&](auto kernel) {
    launchDependent("prefillAttentionKernel", kernel, grid, threads, 0, stream, q, kv, tiles, scaleLog2, out);
  };
  switch (kv.headDim) {
    case 16: launch(prefillAttentionKernel<16, T>); break;
    case 32: launch(prefillAttentionKernel<32, T>); break;
    case 64: launch(prefillAttentionKernel<64, T>); break;
    case 128: launch(prefillAttentionKernel<128, T>); break;
    default:
      throw std::runtime_error("prefill attention: head_dim " + std::to_string(kv.headDim) + " is not supported");
  }
}

template void prefillAttention(const __half*, const PagedKv<__half>&, const PrefillTile*, int, __half*, cudaStream_t);
template void prefillAttention(const __nv_bfloat16*, const PagedKv<__nv_bfloat16>&, const PrefillTile*, int,
                               __nv_bfloat16*, cudaStream_t);

}  // namespace loraserve::cuda

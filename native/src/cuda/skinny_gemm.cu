#include <algorithm>
#include <cstdint>

#include "async_copy.cuh"
#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "half_types.cuh"
#include "skinny_gemm.cuh"
#include "tensor_core_mma.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kTileFeatures = 16;                          // the mma's M: one warp's output features
constexpr int kBlockFeatures = kWarps * kTileFeatures;     // a block's output features
constexpr int kStepK = 32;                                 // k a warp covers per step: 4 quads x 8 values
constexpr int kChunkK = 256;                               // k of x staged in shared memory at a time
constexpr int kStepsPerChunk = kChunkK / kStepK;           // a chunk's weight loads are all in flight at once
// Shared rows 288 elements (576 bytes, 64 mod 128) apart: the 8 lanes of a quarter warp read 16 bytes each from
// two rows, 64 bytes of each, which then fall in distinct banks.
constexpr int kSharedStride = kChunkK + 32;
// Split `in` until there are this many blocks per SM (as many as the launch bounds keep resident: 168 registers
// a thread at most), but no further than lets the splits' partial sums (float32, written and read back once: 8
// bytes per row, output and split) cost 1/kPartialShare of the weight bytes (2 per output and k): splits <=
// in / (4 kPartialShare rows). They mostly stay in L2, which makes that share a ceiling rather than what memory pays.
constexpr int kBlocksPerSm = 3;
constexpr int kPartialShare = 4;
// 16 MiB of partial sums: the 8B model's widest product (gate and up, 28672 outputs) at 64 rows in two splits;
// a product whose splits would not fit splits less.
constexpr size_t kPartialFloats = size_t{4} << 20;
// Columns of blocks a split product may have: outputs up to 262144, past any model's widest product.
constexpr int kTicketCount = 4096;

static_assert(kChunkK % kStepK == 0 && kSkinnyMaxRows % 8 == 0, "chunks hold whole steps, rows whole 8-row tiles");
static_assert((kSharedStride * 2) % 128 == 64, "conflict-free fragment reads: rows 64 bytes off a bank cycle");
static_assert(kSkinnyMaxRows * kSharedStride * 2 <= 48 * 1024, "x's chunk fits static shared memory");

// beta 0 must not read y: it may hold anything, NaN included.
__device__ inline void storeOutput(float* target, float value, float beta) {
  *target = beta == 0.0f ? value : value + beta * *target;
}

// Weights are read once per call: loaded as streaming data (evict first), so x and the partial sums keep L2.
__device__ inline uint4 loadWeights(const void* p) { return __ldcs(reinterpret_cast<const uint4*>(p)); }

// The last block of a column of splits: y = the sum of the column's partials, in split order, + beta y. The
// block's rows x 64 floats are rows x 16 float4s, kTiles per thread; all its loads of kSplitsAtOnce splits are
// in flight together, so the sum waits on the L2 a few times, not once per split and float.
template <int kTiles>
__device__ inline void sumSplits(const float* partials, int rows, int out, int columns, float* y, int ldy, float beta) {
  constexpr int kQuadsPerRow = kBlockFeatures / 4;
  constexpr int kSplitsAtOnce = 16 / kTiles;
  static_assert(kTiles * 8 * kQuadsPerRow == kTiles * kWarps * 32, "kTiles float4s a thread cover the block's rows");
  const int splits = static_cast<int>(gridDim.y);
  const int firstFeature = blockIdx.x * kBlockFeatures;
  const int64_t splitStride = static_cast<int64_t>(rows) * columns;
  float4 sum[kTiles];
#pragma unroll
  for (int j = 0; j < kTiles; ++j) sum[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  for (int first = 0; first < splits; first += kSplitsAtOnce) {
    float4 part[kSplitsAtOnce][kTiles];
#pragma unroll
    for (int d = 0; d < kSplitsAtOnce; ++d) {
#pragma unroll
      for (int j = 0; j < kTiles; ++j) {
        const int unit = j * kWarps * 32 + threadIdx.x;
        const int row = unit / kQuadsPerRow;
        const float* at = partials + (first + d) * splitStride + static_cast<int64_t>(row) * columns + firstFeature +
                          (unit % kQuadsPerRow) * 4;
        // __ldcg: from L2, where the other SMs' writes are; this SM's L1 may hold an older call's lines.
        part[d][j] = first + d < splits && row < rows ? __ldcg(reinterpret_cast<const float4*>(at))
                                                      : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
    }
#pragma unroll
    for (int d = 0; d < kSplitsAtOnce; ++d) {
#pragma unroll
      for (int j = 0; j < kTiles; ++j) {
        sum[j].x += part[d][j].x;
        sum[j].y += part[d][j].y;
        sum[j].z += part[d][j].z;
        sum[j].w += part[d][j].w;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kTiles; ++j) {
    const int unit = j * kWarps * 32 + threadIdx.x;
    const int row = unit / kQuadsPerRow, f = firstFeature + (unit % kQuadsPerRow) * 4;
    if (row >= rows) continue;
    float* target = y + static_cast<int64_t>(row) * ldy + f;
    const float values[4] = {sum[j].x, sum[j].y, sum[j].z, sum[j].w};
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      if (f + c < out) storeOutput(target + c, values[c], beta);
    }
  }
}

// Block (blockIdx.x, blockIdx.y): output features [64 bx, 64 bx + 64) over k in [splitK by, splitK (by + 1)).
// kTiles 8-row tiles of x (rows padded with zeros to 8 kTiles). Lane (group, quad) of warp v loads 16 bytes of
// weight rows f = 64 bx + 16 v + group and f + 8 at k0 + 8 quad, and 16 bytes of x row n at the same k: the
// first 4 values of each form one mma's operands, the last 4 the next one's. The mma sums over k in its own
// order (its k 2 quad + {0, 1, 8, 9} are our k0 + 8 quad + {0, 1, 2, 3}); A and B agree on it, so the sum is the
// same and no shuffle is needed.
template <typename T, int kTiles>
__global__ void __launch_bounds__(kWarps * 32, kBlocksPerSm)
    skinnyGemmKernel(const T* x, int rows, int in, const T* w, int out, float* y, int ldy, float beta, int splitK,
                     float* partials, int* tickets) {
  waitForPreviousKernel();
  __shared__ __align__(16) T xs[kTiles * 8][kSharedStride];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int group = lane >> 2;
  const int quad = lane & 3;
  const int kBegin = blockIdx.y * splitK;
  const int kEnd = min(in, kBegin + splitK);
  const int feature = blockIdx.x * kBlockFeatures + warp * kTileFeatures + group;  // and feature + 8
  const bool lowValid = feature < out, highValid = feature + 8 < out;
  const T* wLow = w + static_cast<int64_t>(lowValid ? feature : 0) * in;
  const T* wHigh = w + static_cast<int64_t>(highValid ? feature + 8 : 0) * in;

  float acc[kTiles][4] = {};
  for (int chunk = kBegin; chunk < kEnd; chunk += kChunkK) {
    // The weight loads first: they are in flight while the block stages x.
    uint4 low[kStepsPerChunk], high[kStepsPerChunk];
#pragma unroll
    for (int s = 0; s < kStepsPerChunk; ++s) {
      const int k = chunk + s * kStepK + quad * 8;
      const bool inK = k < kEnd;  // kEnd and k are multiples of 8: a load is wholly in or out
      low[s] = lowValid && inK ? loadWeights(wLow + k) : make_uint4(0, 0, 0, 0);
      high[s] = highValid && inK ? loadWeights(wHigh + k) : make_uint4(0, 0, 0, 0);
    }
    __syncthreads();  // every warp is done with the previous chunk's x
    constexpr int kLoadsPerRow = kChunkK / 8;
    constexpr int kLoadsPerThread = kTiles * 8 * kLoadsPerRow / (kWarps * 32);
    static_assert(kTiles * 8 * kLoadsPerRow % (kWarps * 32) == 0, "x's chunk splits evenly over the threads");
#pragma unroll
    for (int j = 0; j < kLoadsPerThread; ++j) {
      const int i = j * kWarps * 32 + threadIdx.x;
      const int row = i / kLoadsPerRow, column = (i % kLoadsPerRow) * 8;
      const int k = chunk + column;
      // Zeros past the rows and past kEnd: they meet zero weights or feed outputs nobody stores, never NaN.
      const bool valid = row < rows && k < kEnd;
      copyToShared(&xs[row][column], valid ? x + static_cast<int64_t>(row) * in + k : x, valid);
    }
    waitForCopies();
    __syncthreads();
#pragma unroll
    for (int s = 0; s < kStepsPerChunk; ++s) {
      const uint32_t first[4] = {low[s].x, high[s].x, low[s].y, high[s].y};
      const uint32_t second[4] = {low[s].z, high[s].z, low[s].w, high[s].w};
#pragma unroll
      for (int t = 0; t < kTiles; ++t) {
        const uint4 b = *reinterpret_cast<const uint4*>(&xs[t * 8 + group][s * kStepK + quad * 8]);
        mma16816<T>(acc[t], first, b.x, b.y);
        mma16816<T>(acc[t], second, b.z, b.w);
      }
    }
  }

  // acc[t] holds (feature, rows 8t + 2 quad + {0, 1}) and (feature + 8, the same rows). Partials are
  // [split, row, column] with a column for every block's feature, out or not, so their rows stay 16-byte aligned.
  const bool split = gridDim.y > 1;
  const int columns = gridDim.x * kBlockFeatures;
#pragma unroll
  for (int t = 0; t < kTiles; ++t) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = t * 8 + 2 * quad + (e & 1);
      const int f = feature + (e >> 1) * 8;
      if (row >= rows || f >= out) continue;
      if (split) {
        partials[(static_cast<int64_t>(blockIdx.y) * rows + row) * columns + f] = acc[t][e];
      } else {
        storeOutput(y + static_cast<int64_t>(row) * ldy + f, acc[t][e], beta);
      }
    }
  }
  if (!split) return;

  // The last split of this column to finish sums all of the column's (the threadFenceReduction pattern of the
  // CUDA samples): each thread's partials are visible device-wide before the block takes its ticket.
  __shared__ bool lastSplit;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    lastSplit = atomicAdd(&tickets[blockIdx.x], 1) == static_cast<int>(gridDim.y) - 1;
    if (lastSplit) tickets[blockIdx.x] = 0;  // every other split has taken its ticket: ready for the next call
  }
  __syncthreads();
  if (!lastSplit) return;
  __threadfence();
  sumSplits<kTiles>(partials, rows, out, columns, y, ldy, beta);
}

template <typename T, int kTiles>
void launchTiles(const T* x, int rows, int in, const T* w, int out, float* y, int ldy, float beta, int splitK,
                 float* partials, int* tickets, dim3 grid, cudaStream_t stream) {
  if constexpr (kTiles < kSkinnyMaxRows / 8) {
    if (rows > kTiles * 8) {
      launchTiles<T, kTiles + 1>(x, rows, in, w, out, y, ldy, beta, splitK, partials, tickets, grid, stream);
      return;
    }
  }
  launchDependent("skinnyGemmKernel", skinnyGemmKernel<T, kTiles>, grid, kWarps * 32, 0, stream, x, rows, in, w, out, y,
                  ldy, beta, splitK, partials, tickets);
}

}  // namespace

SkinnyGemm::SkinnyGemm(cudaStream_t stream) : stream_(stream), partials_(kPartialFloats), tickets_(kTicketCount) {
  int device = 0;
  checkCuda(cudaGetDevice(&device), "cudaGetDevice");
  checkCuda(cudaDeviceGetAttribute(&smCount_, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  checkCuda(cudaMemsetAsync(tickets_.data(), 0, tickets_.bytes(), stream), "cudaMemsetAsync (skinny GEMM tickets)");
}

bool SkinnyGemm::fits(const void* x, int rows, int in, const void* w) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return rows >= 2 && rows <= kSkinnyMaxRows && in % 8 == 0 && aligned(x) && aligned(w);
}

template <typename T>
void SkinnyGemm::run(const T* x, int rows, int in, const T* w, int out, float* y, int ldy, float beta) const {
  const int featureBlocks = (out + kBlockFeatures - 1) / kBlockFeatures;
  const int chunks = (in + kChunkK - 1) / kChunkK;
  const int64_t floatsPerSplit = static_cast<int64_t>(rows) * featureBlocks * kBlockFeatures;
  int splits = (kBlocksPerSm * smCount_ + featureBlocks - 1) / featureBlocks;
  const int64_t fitInPartials = static_cast<int64_t>(partials_.size()) / floatsPerSplit;
  splits = std::min({splits, chunks, in / (4 * kPartialShare * rows), static_cast<int>(std::min<int64_t>(fitInPartials, chunks))});
  if (featureBlocks > static_cast<int>(tickets_.size())) splits = 1;
  splits = std::max(splits, 1);
  // Whole chunks per split; rounding up may leave fewer splits than asked.
  const int splitK = (chunks + splits - 1) / splits * kChunkK;
  splits = (in + splitK - 1) / splitK;
  launchTiles<T, 1>(x, rows, in, w, out, y, ldy, beta, splitK, partials_.data(), tickets_.data(),
                    dim3(featureBlocks, splits), stream_);
}

template void SkinnyGemm::run(const __half*, int, int, const __half*, int, float*, int, float) const;
template void SkinnyGemm::run(const __nv_bfloat16*, int, int, const __nv_bfloat16*, int, float*, int, float) const;

}  // namespace loraserve::cuda

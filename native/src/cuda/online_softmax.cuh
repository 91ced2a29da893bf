// The online softmax of flash attention, for the two rows a lane holds of a 16-row mma.sync tile (rows group and
// group + 8 of tensor_core_mma.cuh's C layout: score[nt][2 r + e] is row r's key 8 nt + 2 quad + e). Scores are
// kept in the log2 domain (scaled by log2 e), so each exponential is one exp2f. Prefill and decode attention
// share it, and with it the guard for rows whose keys are all masked.
#pragma once

#include <cuda_runtime.h>

#include <cmath>

namespace loraserve::cuda {

// Folds a tile of kTiles 8-key score tiles into row r's running max and sum. Each score is scaled by
// scaleLog2, or masked to -inf where keep(nt, e) is false, and becomes its unnormalised probability in place
// (the A fragment of the P V product that follows); the row's output accumulators (acc[.][2 r], acc[.][2 r + 1])
// are rescaled to the new max.
template <int kTiles, int kDimTiles, typename Keep>
__device__ inline void onlineSoftmaxRow(float (&score)[kTiles][4], float (&acc)[kDimTiles][4], int r, float scaleLog2,
                                        float& rowMax, float& rowSum, Keep keep) {
  float tileMax = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < kTiles; ++nt) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float& s = score[nt][2 * r + e];
      s = keep(nt, e) ? s * scaleLog2 : -INFINITY;
      tileMax = fmaxf(tileMax, s);
    }
  }
  tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 1));
  tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 2));
  const float newMax = fmaxf(rowMax, tileMax);
  // A row with every key masked so far keeps max -inf; subtracting 0 then gives exp2(-inf) = 0, not NaN.
  const float base = newMax == -INFINITY ? 0.0f : newMax;
  const float correction = exp2f(rowMax - base);
  float sum = 0.0f;
#pragma unroll
  for (int nt = 0; nt < kTiles; ++nt) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float& s = score[nt][2 * r + e];
      s = exp2f(s - base);  // exactly 0 where masked
      sum += s;
    }
  }
  rowSum = rowSum * correction + sum;
  rowMax = newMax;
#pragma unroll
  for (int dt = 0; dt < kDimTiles; ++dt) {
    acc[dt][2 * r] *= correction;
    acc[dt][2 * r + 1] *= correction;
  }
}

// A row's total over its quad (the four lanes that hold one row of a C fragment): each lane's sums are a share.
__device__ inline float quadSum(float value) {
  value += __shfl_xor_sync(0xffffffffu, value, 1);
  value += __shfl_xor_sync(0xffffffffu, value, 2);
  return value;
}

// Softmax states of one row that saw different keys (the warps of a block, the splits of a long context), each
// [dim output values, running max, running sum] and `stride` floats after the one before: the merged max and
// sum, and the merged output element d, not yet divided by the sum.
struct MergedSoftmax {
  float max;
  float sum;
  float value;
  // The output element: 0 for a row with no key to attend to.
  __device__ float output() const { return sum > 0.0f ? value / sum : 0.0f; }
};

__device__ inline MergedSoftmax mergeSoftmaxStates(const float* states, int count, int stride, int dim, int d) {
  MergedSoftmax merged{-INFINITY, 0.0f, 0.0f};
  for (int i = 0; i < count; ++i) merged.max = fmaxf(merged.max, states[i * stride + dim]);
  for (int i = 0; i < count; ++i) {
    const float* state = states + i * stride;
    // A state that saw only masked keys (max -inf) weighs nothing, and no -inf - -inf makes a NaN.
    const float weight = state[dim] == -INFINITY ? 0.0f : exp2f(state[dim] - merged.max);
    merged.sum += state[dim + 1] * weight;
    merged.value += state[d] * weight;
  }
  return merged;
}

}  // namespace loraserve::cuda

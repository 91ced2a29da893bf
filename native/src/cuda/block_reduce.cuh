// Block-wide sums and maxima for kernels that give one block to one row.
#pragma once

#include <cuda_runtime.h>

namespace loraserve::cuda {

template <typename T>
__device__ inline T warpSum(T value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

template <typename T>
__device__ inline T warpMax(T value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value = max(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// Every thread gets the block's sum. `scratch` holds at least 32 values; blockDim.x is a multiple of 32.
template <typename T>
__device__ inline T blockSum(T value, T* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  value = warpSum(value);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  value = lane < warps ? scratch[lane] : T(0);
  return warpSum(value);
}

template <typename T>
__device__ inline T blockMax(T value, T* scratch, T lowest) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  value = warpMax(value);
  __syncthreads();
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  value = lane < warps ? scratch[lane] : lowest;
  return warpMax(value);
}

}  // namespace loraserve::cuda

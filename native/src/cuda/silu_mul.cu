#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "half_types.cuh"
#include "silu_mul.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kThreads = 256;

template <int kVector>
struct FloatVector;
template <>
struct FloatVector<4> {
  using Type = float4;
};
template <>
struct FloatVector<1> {
  using Type = float;
};

// kVector consecutive outputs of one row per thread, from one vector load of gate and one of up (16 bytes each
// where the width allows), so a prefill's float32 gate/up rows stream at the bandwidth. Rows are grid.x (no
// per-element division to find them), column runs grid.y.
template <int kVector, typename T>
__global__ void siluAndMulKernel(const float* gateUp, T* out, int width) {
  waitForPreviousKernel();
  using Vector = typename FloatVector<kVector>::Type;
  const int col = (blockIdx.y * kThreads + threadIdx.x) * kVector;
  if (col >= width) return;
  const int64_t row = blockIdx.x;
  const float* gateRow = gateUp + row * 2 * width;
  const Vector gateVector = *reinterpret_cast<const Vector*>(gateRow + col);
  const Vector upVector = *reinterpret_cast<const Vector*>(gateRow + width + col);
  const float* gate = reinterpret_cast<const float*>(&gateVector);
  const float* up = reinterpret_cast<const float*>(&upVector);
  float result[kVector];
#pragma unroll
  for (int i = 0; i < kVector; ++i) result[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
  T* o = out + row * width + col;
  if constexpr (kVector == 4) {
    *reinterpret_cast<uint2*>(o) = make_uint2(packPair<T>(result[0], result[1]), packPair<T>(result[2], result[3]));
  } else {
    o[0] = fromFloat<T>(result[0]);
  }
}

template <int kVector, typename T>
void launch(const float* gateUp, T* out, int rows, int width, cudaStream_t stream) {
  const int perBlock = kThreads * kVector;
  const dim3 grid(rows, (width + perBlock - 1) / perBlock);
  launchDependent("siluAndMulKernel", siluAndMulKernel<kVector, T>, grid, kThreads, 0, stream, gateUp, out, width);
}

}  // namespace

template <typename T>
void siluAndMul(const float* gateUp, T* out, int rows, int width, cudaStream_t stream) {
  if (rows == 0 || width == 0) return;
  // Vector loads need every row's gate and up to start 16-byte aligned (the buffers are): a width divisible by 4.
  if (width % 4 == 0) {
    launch<4>(gateUp, out, rows, width, stream);
  } else {
    launch<1>(gateUp, out, rows, width, stream);
  }
}

template void siluAndMul(const float*, __half*, int, int, cudaStream_t);
template void siluAndMul(const float*, __nv_bfloat16*, int, int, cudaStream_t);

}  // namespace loraserve::cuda

#include <cuda_fp16.h>

#include <stdexcept>

#include "convert_to_bf16.cuh"
#include "cuda_check.h"

namespace loraserve::cuda {

namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ inline float toFloat(T value);
template <>
__device__ inline float toFloat(float value) { return value; }
template <>
__device__ inline float toFloat(__half value) { return __half2float(value); }

template <typename T>
__global__ void convertKernel(const T* src, int64_t count, __nv_bfloat16* dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = __float2bfloat16(toFloat(src[i]));
  }
}

}  // namespace

void convertToBf16(const void* src, DType dtype, int64_t count, __nv_bfloat16* dst, cudaStream_t stream) {
  if (count == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((count + kThreads - 1) / kThreads, 65536));
  switch (dtype) {
    case DType::F32: convertKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(src), count, dst); break;
    case DType::F16: convertKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const __half*>(src), count, dst); break;
    case DType::BF16: throw std::logic_error("convertToBf16: the tensor is bf16 already");
  }
  checkLaunch("convertKernel");
}

}  // namespace loraserve::cuda

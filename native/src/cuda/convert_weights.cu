#include <algorithm>
#include <stdexcept>

#include "convert_weights.cuh"
#include "cuda_check.h"
#include "half_types.cuh"

namespace loraserve::cuda {

namespace {

constexpr int kThreads = 256;

__device__ inline float widen(float value) { return value; }
__device__ inline float widen(__half value) { return toFloat(value); }
__device__ inline float widen(__nv_bfloat16 value) { return toFloat(value); }

template <typename S, typename T>
__global__ void convertKernel(const S* src, int64_t count, T* dst, int* outOfRange) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float value = widen(src[i]);
    if (outOfRange && fabsf(value) > HalfType<T>::kMaxFinite && isfinite(value)) *outOfRange = 1;
    dst[i] = fromFloat<T>(value);
  }
}

}  // namespace

template <typename T>
void convertTensor(const void* src, DType dtype, int64_t count, T* dst, int* outOfRange, cudaStream_t stream) {
  if (count == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((count + kThreads - 1) / kThreads, 65536));
  switch (dtype) {
    case DType::F32:
      convertKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(src), count, dst, outOfRange);
      break;
    case DType::F16:
      convertKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const __half*>(src), count, dst, outOfRange);
      break;
    case DType::BF16:
      convertKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(src), count, dst, outOfRange);
      break;
  }
  checkLaunch("convertKernel");
}

template void convertTensor(const void*, DType, int64_t, __half*, int*, cudaStream_t);
template void convertTensor(const void*, DType, int64_t, __nv_bfloat16*, int*, cudaStream_t);

}  // namespace loraserve::cuda

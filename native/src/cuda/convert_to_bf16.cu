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

// Little-endian bytes, read one at a time: the window's elements need not be aligned.
__device__ inline float storedValue(const uint8_t* p, DType dtype) {
  if (dtype == DType::F32) {
    return __uint_as_float(p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24));
  }
  const unsigned short bits = static_cast<unsigned short>(p[0] | (p[1] << 8));
  return dtype == DType::F16 ? __half2float(__ushort_as_half(bits)) : __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

constexpr int kBlocksPerWindow = 32;

__global__ void convertWindowsKernel(const ConvertWindow* windows) {
  const ConvertWindow w = windows[blockIdx.y];
  const int64_t count = static_cast<int64_t>(w.rows) * w.cols;
  const int elementBytes = w.dtype == DType::F32 ? 4 : 2;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / w.cols;
    const int64_t c = i - r * w.cols;
    const float value = storedValue(w.src + r * w.srcRowBytes + c * elementBytes, w.dtype);
    w.dst[r * w.dstPitch + c] = __float2bfloat16(w.scale * value);
  }
}

}  // namespace

void convertWindowsToBf16(const ConvertWindow* windows, int count, cudaStream_t stream) {
  if (count == 0) return;
  convertWindowsKernel<<<dim3(kBlocksPerWindow, count), kThreads, 0, stream>>>(windows);
  checkLaunch("convertWindowsKernel");
}

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

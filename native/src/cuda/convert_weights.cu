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

// Little-endian bytes, read one at a time: the window's elements need not be aligned.
__device__ inline float storedValue(const uint8_t* p, DType dtype) {
  if (dtype == DType::F32) {
    return __uint_as_float(p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24));
  }
  const unsigned short bits = static_cast<unsigned short>(p[0] | (p[1] << 8));
  return dtype == DType::F16 ? __half2float(__ushort_as_half(bits)) : __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

constexpr int kBlocksPerWindow = 32;

template <typename T>
__global__ void convertWindowsKernel(const ConvertWindow<T>* windows) {
  const ConvertWindow<T> w = windows[blockIdx.y];
  const int64_t count = static_cast<int64_t>(w.rows) * w.cols;
  const int elementBytes = w.dtype == DType::F32 ? 4 : 2;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / w.cols;
    const int64_t c = i - r * w.cols;
    const float value = storedValue(w.src + r * w.srcRowBytes + c * elementBytes, w.dtype);
    w.dst[r * w.dstPitch + c] = fromFloat<T>(w.scale * value);
  }
}

}  // namespace

template <typename T>
void convertWindows(const ConvertWindow<T>* windows, int count, cudaStream_t stream) {
  if (count == 0) return;
  convertWindowsKernel<<<dim3(kBlocksPerWindow, count), kThreads, 0, stream>>>(windows);
  checkLaunch("convertWindowsKernel");
}

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

template void convertWindows(const ConvertWindow<__half>*, int, cudaStream_t);
template void convertWindows(const ConvertWindow<__nv_bfloat16>*, int, cudaStream_t);
template void convertTensor(const void*, DType, int64_t, __half*, int*, cudaStream_t);
template void convertTensor(const void*, DType, int64_t, __nv_bfloat16*, int*, cudaStream_t);

}  // namespace loraserve::cuda

// The two 16-bit types the CUDA backend can keep weights, activations and the KV cache in (EngineOptions
// dtype): float16, three more mantissa bits and so nearer the float32 reference, and bfloat16, float32's range.
// Every kernel is a template over the type T and reads and writes it through these helpers; sums are float32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <library_types.h>

#include <cstdint>

namespace loraserve::cuda {

template <typename T>
struct HalfType;

template <>
struct HalfType<__half> {
  static constexpr cudaDataType_t kCudaType = CUDA_R_16F;
  static constexpr float kMaxFinite = 65504.0f;
  static constexpr const char* kName = "float16";
};

template <>
struct HalfType<__nv_bfloat16> {
  static constexpr cudaDataType_t kCudaType = CUDA_R_16BF;
  static constexpr float kMaxFinite = 3.3895313892515355e38f;
  static constexpr const char* kName = "bfloat16";
};

__host__ __device__ inline float toFloat(__half value) { return __half2float(value); }
__host__ __device__ inline float toFloat(__nv_bfloat16 value) { return __bfloat162float(value); }

template <typename T>
__host__ __device__ inline T fromFloat(float value);

// Activations past float16's range saturate instead of becoming infinities that would turn every later sum into
// NaN (the residual stream, where Llama's outliers live, is float32 and never passes through here). NaN stays NaN.
template <>
__host__ __device__ inline __half fromFloat<__half>(float value) {
  const float limit = HalfType<__half>::kMaxFinite;
  return __float2half_rn(value != value ? value : fminf(fmaxf(value, -limit), limit));
}

template <>
__host__ __device__ inline __nv_bfloat16 fromFloat<__nv_bfloat16>(float value) {
  return __float2bfloat16(value);
}

template <typename T>
__device__ inline uint32_t bitsOf(T value) {
  return *reinterpret_cast<const unsigned short*>(&value);
}

// Two values in one 32-bit register, `low` in the low half: the operand layout of mma.sync and of paired stores.
template <typename T>
__device__ inline uint32_t packPair(float low, float high) {
  return bitsOf(fromFloat<T>(low)) | (bitsOf(fromFloat<T>(high)) << 16);
}

// Eight consecutive values from a 16-byte-aligned address (one 16-byte load, the width at which a warp's loads
// coalesce best), as float.
template <typename T>
__device__ inline void load8(const T* src, float* out) {
  const uint4 packed = *reinterpret_cast<const uint4*>(src);
  const T* values = reinterpret_cast<const T*>(&packed);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = toFloat(values[i]);
}

}  // namespace loraserve::cuda

// float -> float16 / bfloat16 on the host, as fromFloat<T> (half_types.cuh) rounds on the device: to nearest
// even, float16 saturating at +-65504, NaN kept NaN. The CUDA headers' host versions of these conversions are
// general-purpose and slow (an adapter load spent 117 ms converting 84 MB with them); these are a few integer
// operations each, so a load's host threads convert at memory speed. native/check/check_host_half.cu holds them
// to the CUDA headers' results, bit for bit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

namespace loraserve::cuda {

inline uint32_t floatBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

inline float bitsFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Branch-free (every case is computed and the right one selected by masks): a loop of them runs without jumps.
inline uint16_t halfBitsOf(float value) {
  const uint32_t sign = (floatBits(value) >> 16) & 0x8000u;
  const uint32_t magnitude = floatBits(value) & 0x7fffffffu;
  // Normal: rebias the exponent (127 - 15) and round the 13 dropped mantissa bits to nearest even.
  const uint32_t normal = (magnitude - 0x38000000u + 0xfffu + ((magnitude >> 13) & 1u)) >> 13;
  // Below float16's smallest normal (2^-14): adding 0.5 makes the float adder round |value| to float16's
  // subnormal step (2^-24) in the low mantissa bits.
  const uint32_t subnormal = floatBits(bitsFloat(magnitude) + 0.5f) - 0x3f000000u;
  const uint32_t isSubnormal = 0u - static_cast<uint32_t>(magnitude < 0x38800000u);
  const uint32_t isPastMax = 0u - static_cast<uint32_t>(magnitude >= 0x477fe000u);  // 65504 and past: saturate
  const uint32_t isNan = 0u - static_cast<uint32_t>(magnitude > 0x7f800000u);
  uint32_t bits = (subnormal & isSubnormal) | (normal & ~isSubnormal);
  bits = (0x7bffu & isPastMax) | (bits & ~isPastMax);
  bits = (0x7e00u & isNan) | (bits & ~isNan);
  return static_cast<uint16_t>(sign | bits);
}

// Branch-free as well.
inline uint16_t bfloat16BitsOf(float value) {
  const uint32_t bits = floatBits(value);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const uint32_t isNan = 0u - static_cast<uint32_t>((bits & 0x7fffffffu) > 0x7f800000u);
  return static_cast<uint16_t>((((bits >> 16) | 0x40u) & isNan) | (rounded & ~isNan));  // NaN: quiet
}

// The bits of T(value), T being one of the backend's 16-bit types.
template <typename T>
inline uint16_t hostBitsOf(float value);

template <>
inline uint16_t hostBitsOf<__half>(float value) {
  return halfBitsOf(value);
}

template <>
inline uint16_t hostBitsOf<__nv_bfloat16>(float value) {
  return bfloat16BitsOf(value);
}

}  // namespace loraserve::cuda

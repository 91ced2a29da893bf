// host_half.h (what an adapter load converts with on the host) against the CUDA headers' conversions, bit for
// bit: fromFloat<T> (half_types.cuh, the device's rounding, float16 saturating) on random float bit patterns
// of every class (normals, float16 subnormals and underflow, values past 65504, infinities, NaN), and on every
// float16 and bfloat16 value and the midpoints between neighbours, where rounding to nearest even decides.
#include <type_traits>

#include "../src/cuda/host_half.h"
#include "check_common.cuh"

namespace loraserve::check {

namespace {

// NaN is one class: which NaN bits come out is not part of the contract.
template <typename T>
int64_t comparable(uint16_t bits) {
  const uint16_t infinity = std::is_same_v<T, __half> ? 0x7c00 : 0x7f80;
  return (bits & 0x7fff) > infinity ? -1 : bits;
}

template <typename T>
uint16_t deviceRounding(float value) {
  const T rounded = cuda::fromFloat<T>(value);
  uint16_t bits;
  std::memcpy(&bits, &rounded, sizeof bits);
  return bits;
}

template <typename T>
void checkType() {
  std::vector<float> inputs;
  std::uniform_int_distribution<uint32_t> anyBits;
  for (int i = 0; i < 1 << 20; ++i) inputs.push_back(cuda::bitsFloat(anyBits(rng)));
  // Around float16's subnormal and normal ranges, where the bit patterns above are rare.
  std::uniform_real_distribution<float> small(-1e-4f, 1e-4f), large(-7e4f, 7e4f);
  for (int i = 0; i < 1 << 18; ++i) inputs.push_back(small(rng));
  for (int i = 0; i < 1 << 18; ++i) inputs.push_back(large(rng));
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float value = std::is_same_v<T, __half> ? __half2float(__half(__half_raw{static_cast<unsigned short>(bits)}))
                                                  : cuda::bitsFloat(bits << 16);
    const float next = std::is_same_v<T, __half> ? __half2float(__half(__half_raw{static_cast<unsigned short>(bits + 1)}))
                                                 : cuda::bitsFloat((bits + 1) << 16);
    inputs.push_back(value);
    if (std::isfinite(value) && std::isfinite(next)) inputs.push_back(value + (next - value) / 2);
  }
  inputs.push_back(INFINITY);
  inputs.push_back(-INFINITY);
  std::vector<int64_t> ours, reference;
  for (float value : inputs) {
    ours.push_back(comparable<T>(cuda::hostBitsOf<T>(value)));
    reference.push_back(comparable<T>(deviceRounding<T>(value)));
  }
  compareIds(tagged<T>("host conversion of " + std::to_string(inputs.size()) + " floats"), ours, reference);
}

}  // namespace

void checkHostHalf() {
  checkType<__half>();
  checkType<__nv_bfloat16>();
}

}  // namespace loraserve::check

// cuda::siluAndMul against the CPU siluMultiply(): float32 [gate | up] rows in, T out.
#include "../src/cpu/swiglu.h"
#include "../src/cuda/silu_mul.cuh"
#include "check_common.cuh"

namespace loraserve::check {
namespace {

template <typename T>
void checkRows(int rows, int width) {
  const std::vector<float> gateUp = randomFloats(static_cast<size_t>(rows) * 2 * width, 2.0f);
  std::vector<float> gate(static_cast<size_t>(rows) * width), up(gate.size());
  for (int r = 0; r < rows; ++r) {
    std::copy_n(gateUp.begin() + static_cast<size_t>(r) * 2 * width, width, gate.begin() + static_cast<size_t>(r) * width);
    std::copy_n(gateUp.begin() + static_cast<size_t>(r) * 2 * width + width, width, up.begin() + static_cast<size_t>(r) * width);
  }
  siluMultiply(gate.data(), up.data(), static_cast<int64_t>(gate.size()));
  auto din = toDevice(gateUp);
  auto out = poisoned<T>(gate.size());
  cuda::siluAndMul(din.data(), out.data(), rows, width, nullptr);
  compare(tagged<T>("silu_mul rows " + std::to_string(rows) + " width " + std::to_string(width)), widen(toHost(out)), gate,
          tolerance<T>(), {rows, width});
}

template <typename T>
void checkAll() {
  checkRows<T>(5, 14336);
  checkRows<T>(2, 40);
  checkRows<T>(3, 37);  // not divisible by 4: one value per thread
}

}  // namespace

void checkSiluMul() {
  checkAll<__half>();
  checkAll<__nv_bfloat16>();
}

}  // namespace loraserve::check

// cuda::rmsNorm against the CPU rmsNorm(): float32 rows in, T out, with and without the row gather the final
// norm uses.
#include "../src/cpu/rms_norm.h"
#include "../src/cuda/rmsnorm.cuh"
#include "check_common.cuh"

namespace loraserve::check {
namespace {

template <typename T>
void checkRows(int rows, int dim) {
  const std::vector<float> x = randomFloats(static_cast<size_t>(rows) * dim, 3.0f);
  const std::vector<float> weight = exactIn<T>(randomFloats(dim));
  std::vector<float> expected(x.size());
  rmsNorm(x.data(), rows, dim, weight.data(), 1e-5f, expected.data());
  auto dx = toDevice(x);
  auto dw = toDevice(narrow<T>(weight));
  auto out = poisoned<T>(x.size());
  cuda::rmsNorm(dx.data(), nullptr, dw.data(), out.data(), rows, dim, 1e-5f, nullptr);
  compare(tagged<T>("rmsnorm rows " + std::to_string(rows) + " dim " + std::to_string(dim)), widen(toHost(out)), expected,
          tolerance<T>(), {rows, dim});
  // The final norm gathers the rows that need logits.
  const std::vector<int32_t> pick = {rows - 1, 0};
  auto dpick = toDevice(pick);
  auto gathered = poisoned<T>(2 * static_cast<size_t>(dim));
  cuda::rmsNorm(dx.data(), dpick.data(), dw.data(), gathered.data(), 2, dim, 1e-5f, nullptr);
  std::vector<float> expectedPick(expected.begin() + static_cast<size_t>(rows - 1) * dim, expected.begin() + static_cast<size_t>(rows) * dim);
  expectedPick.insert(expectedPick.end(), expected.begin(), expected.begin() + dim);
  compare(tagged<T>("rmsnorm gathered rows (dim " + std::to_string(dim) + ")"), widen(toHost(gathered)), expectedPick, tolerance<T>(),
          {2, dim});
}

template <typename T>
void checkAll() {
  checkRows<T>(7, 4096);
  checkRows<T>(3, 96);
}

}  // namespace

void checkRmsNorm() {
  checkAll<__half>();
  checkAll<__nv_bfloat16>();
}

}  // namespace loraserve::check

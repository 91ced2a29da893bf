// The products (cuda::Gemm::linear) against the CPU linear(): one-row products take the matrix-vector kernel,
// the others cuBLAS; beta 1 is the residual add. Inputs in T, output float32.
#include "../src/cpu/gemm.h"
#include "../src/cuda/gemm.h"
#include "check_common.cuh"

namespace loraserve::check {
namespace {

template <typename T>
void checkLinear(cuda::Gemm& gemm, int rows, int in, int out, float beta) {
  const std::vector<float> x = exactIn<T>(randomFloats(static_cast<size_t>(rows) * in));
  const std::vector<float> w = exactIn<T>(randomFloats(static_cast<size_t>(out) * in, 0.05f));
  const std::vector<float> y = randomFloats(static_cast<size_t>(rows) * out);
  std::vector<float> expected = y;
  linear(x.data(), rows, in, w.data(), out, expected.data(), 1.0f, beta);
  auto dx = toDevice(narrow<T>(x));
  auto dw = toDevice(narrow<T>(w));
  auto dy = toDevice(y);
  if (beta == 0.0f) checkCuda(cudaMemset(dy.data(), 0xff, dy.bytes()), "poison");
  gemm.linear(dx.data(), rows, in, dw.data(), out, dy.data(), out, beta);
  compare(tagged<T>("linear rows " + std::to_string(rows) + " in " + std::to_string(in) + " out " + std::to_string(out) +
                    " beta " + std::to_string(static_cast<int>(beta))),
          toHost(dy), expected, tolerance<float>(), {rows, out}, "float32 out");
}

template <typename T>
void checkAll() {
  cuda::Gemm gemm(nullptr);
  checkLinear<T>(gemm, 1, 4096, 6144, 0.0f);
  checkLinear<T>(gemm, 1, 14336, 40, 1.0f);
  checkLinear<T>(gemm, 1, 96, 40, 1.0f);
  checkLinear<T>(gemm, 5, 14336, 512, 1.0f);
  checkLinear<T>(gemm, 8, 96, 40, 0.0f);
  checkLinear<T>(gemm, 33, 4096, 1000, 1.0f);
}

}  // namespace

void checkGemm() {
  checkAll<__half>();
  checkAll<__nv_bfloat16>();
}

}  // namespace loraserve::check

// The products (cuda::Gemm::linear) against the CPU linear(): one-row products take the matrix-vector kernel,
// 2 to kSkinnyMaxRows rows the skinny tensor-core kernel (split across blocks or not, by the shape), the others
// cuBLAS; beta 1 is the residual add, into a y wider than the product (ldy > out). Inputs in T, output float32.
#include "../src/cpu/gemm.h"
#include "../src/cuda/gemm.h"
#include "../src/cuda/skinny_gemm.cuh"
#include "check_common.cuh"

namespace loraserve::check {
namespace {

// y is [rows, ldy]; the product fills its first `out` columns, which are compared.
template <typename T>
void checkLinear(cuda::Gemm& gemm, int rows, int in, int out, float beta, int ldy = 0) {
  if (ldy == 0) ldy = out;
  const std::vector<float> x = exactIn<T>(randomFloats(static_cast<size_t>(rows) * in));
  const std::vector<float> w = exactIn<T>(randomFloats(static_cast<size_t>(out) * in, 0.05f));
  const std::vector<float> y = randomFloats(static_cast<size_t>(rows) * ldy);
  std::vector<float> expected(static_cast<size_t>(rows) * out);
  for (int r = 0; r < rows; ++r) {
    std::copy_n(y.begin() + static_cast<size_t>(r) * ldy, out, expected.begin() + static_cast<size_t>(r) * out);
  }
  linear(x.data(), rows, in, w.data(), out, expected.data(), 1.0f, beta);
  auto dx = toDevice(narrow<T>(x));
  auto dw = toDevice(narrow<T>(w));
  auto dy = toDevice(y);
  if (beta == 0.0f) checkCuda(cudaMemset(dy.data(), 0xff, dy.bytes()), "poison");
  gemm.linear(dx.data(), rows, in, dw.data(), out, dy.data(), ldy, beta);
  const std::vector<float> full = toHost(dy);
  std::vector<float> got(expected.size());
  for (int r = 0; r < rows; ++r) {
    std::copy_n(full.begin() + static_cast<size_t>(r) * ldy, out, got.begin() + static_cast<size_t>(r) * out);
  }
  compare(tagged<T>("linear rows " + std::to_string(rows) + " in " + std::to_string(in) + " out " + std::to_string(out) +
                    " beta " + std::to_string(static_cast<int>(beta)) + (ldy != out ? " ldy " + std::to_string(ldy) : "")),
          got, expected, tolerance<float>(), {rows, out}, "float32 out");
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
  // The skinny kernel: every count of 8-row tiles, partial tiles of rows and of outputs (1000, 40), `in` not a
  // multiple of its 256-wide chunk (4104, 96), split (small out, long in) and unsplit (wide out) products.
  checkLinear<T>(gemm, 2, 4096, 1024, 0.0f);
  checkLinear<T>(gemm, 3, 4096, 4096, 1.0f, 4100);
  checkLinear<T>(gemm, 8, 14336, 4096, 1.0f, 4096 + 64);
  checkLinear<T>(gemm, 17, 4104, 1000, 0.0f, 1008);
  checkLinear<T>(gemm, 32, 4096, 14336, 0.0f);
  checkLinear<T>(gemm, 64, 4096, 14336, 1.0f, 14336 + 8);
  checkLinear<T>(gemm, 64, 14336, 4096, 1.0f);
  checkLinear<T>(gemm, 64, 96, 40, 0.0f, 48);
  checkLinear<T>(gemm, 4, 512, 36000, 1.0f, 36004);  // enough blocks unsplit: one pass writes y
  checkLinear<T>(gemm, cuda::kSkinnyMaxRows + 1, 4096, 1024, 1.0f, 1030);  // past the skinny rows: cuBLAS with ldy
}

}  // namespace

void checkGemm() {
  checkAll<__half>();
  checkAll<__nv_bfloat16>();
}

}  // namespace loraserve::check

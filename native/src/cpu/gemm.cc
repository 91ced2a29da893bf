#include "gemm.h"

#include <cblas.h>

namespace loraserve {

namespace {

// Below this many rows sgemm spends more time packing the weight than multiplying (measured 3-5x slower than
// sgemv at one row on the project's CPU machine); matrix-vector products stream the weight once per row.
constexpr int64_t kMinRowsForGemm = 4;

}  // namespace

void linear(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, float* y, float alpha,
            float beta) {
  if (rows == 0 || out == 0) return;
  if (rows < kMinRowsForGemm) {
    for (int64_t r = 0; r < rows; ++r) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(out), static_cast<int>(in), alpha, w,
                  static_cast<int>(in), x + r * in, 1, beta, y + r * out, 1);
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(out),
              static_cast<int>(in), alpha, x, static_cast<int>(in), w, static_cast<int>(in), beta, y,
              static_cast<int>(out));
}

void setGemmThreads(int threads) { openblas_set_num_threads(threads); }

}  // namespace loraserve

#include "gemm.h"

#include <cblas.h>

namespace loraserve {

void linear(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, float* y, float alpha,
            float beta) {
  if (rows == 0 || out == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(out),
              static_cast<int>(in), alpha, x, static_cast<int>(in), w, static_cast<int>(in), beta, y,
              static_cast<int>(out));
}

void setGemmThreads(int threads) { openblas_set_num_threads(threads); }

}  // namespace loraserve

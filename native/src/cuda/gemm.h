// The model's matrix products: y = x · wᵀ (+ beta y), 16-bit operands (float16 or bfloat16), float32
// accumulation and output, in the layout of every torch Linear weight (x [rows, in], w [out, in], y [rows, out],
// all row-major). One-row products go to matrix_vector.cuh, those of 2 to kSkinnyMaxRows rows (batched decode) to
// skinny_gemm.cuh, the rest (prefill) to cuBLAS.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "device_buffer.h"
#include "skinny_gemm.cuh"

namespace loraserve::cuda {

class Gemm {
 public:
  explicit Gemm(cudaStream_t stream);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // y [rows, ldy] (its first `out` columns) = x · wᵀ + beta y. beta = 1 adds into y: the residual stream takes
  // o_proj and down_proj this way, so the residual add costs no pass of its own.
  template <typename T>
  void linear(const T* x, int rows, int in, const T* w, int out, float* y, int ldy, float beta) const;

  // The same product by cuBLAS whatever its rows: what linear() does past the skinny rows, and what the bench
  // (native/check/device_limits.cu) measures the skinny kernel against.
  template <typename T>
  void linearByCublas(const T* x, int rows, int in, const T* w, int out, float* y, int ldy, float beta) const;

 private:
  cudaStream_t stream_;
  cublasHandle_t handle_ = nullptr;
  // cuBLAS takes its workspace from here instead of allocating, which CUDA graph capture requires.
  DeviceBuffer<unsigned char> workspace_;
  SkinnyGemm skinny_;
};

}  // namespace loraserve::cuda

#include <string>

#include "cuda_check.h"
#include "gemm.h"
#include "half_types.cuh"
#include "matrix_vector.cuh"

namespace loraserve::cuda {

namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;  // what NVIDIA recommends for Hopper

void checkCublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("cuBLAS: ") + what + ": " + cublasGetStatusString(status));
  }
}

}  // namespace

Gemm::Gemm(cudaStream_t stream) : stream_(stream), workspace_(kWorkspaceBytes), skinny_(stream) {
  checkCublas(cublasCreate(&handle_), "cublasCreate");
  checkCublas(cublasSetStream(handle_, stream), "cublasSetStream");
  checkCublas(cublasSetWorkspace(handle_, workspace_.data(), workspace_.bytes()), "cublasSetWorkspace");
}

Gemm::~Gemm() {
  if (handle_) cublasDestroy(handle_);
}

template <typename T>
void Gemm::linear(const T* x, int rows, int in, const T* w, int out, float* y, int ldy, float beta) const {
  if (rows == 0) return;
  if (rows == 1) {
    matrixVector(x, in, w, out, y, beta, stream_);
    return;
  }
  if (SkinnyGemm::fits(x, rows, in, w)) {
    skinny_.run(x, rows, in, w, out, y, ldy, beta);
    return;
  }
  linearByCublas(x, rows, in, w, out, y, ldy, beta);
}

template <typename T>
void Gemm::linearByCublas(const T* x, int rows, int in, const T* w, int out, float* y, int ldy, float beta) const {
  const float alpha = 1.0f;
  // cuBLAS is column-major: row-major y [rows, out] is its [out, rows], computed as wᵀ-read-transposed times x,
  // where row-major w [out, in] and x [rows, in] are its [in, out] and [in, rows].
  constexpr cudaDataType_t type = HalfType<T>::kCudaType;
  checkCublas(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &alpha, w, type, in, x, type, in, &beta, y,
                           CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "cublasGemmEx");
}

template void Gemm::linear(const __half*, int, int, const __half*, int, float*, int, float) const;
template void Gemm::linear(const __nv_bfloat16*, int, int, const __nv_bfloat16*, int, float*, int, float) const;
template void Gemm::linearByCublas(const __half*, int, int, const __half*, int, float*, int, float) const;
template void Gemm::linearByCublas(const __nv_bfloat16*, int, int, const __nv_bfloat16*, int, float*, int, float) const;

}  // namespace loraserve::cuda

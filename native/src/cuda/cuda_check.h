// Every CUDA runtime call is checked: a failure throws with the call named, so the engine reports it to
// TypeScript instead of computing on garbage (an exit code of 0 proves nothing on a GPU).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace loraserve::cuda {

inline void checkCuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
  }
}

// After a kernel launch: catches bad launch configurations at once (asynchronous faults surface at the next
// synchronising call, which is checked too).
inline void checkLaunch(const char* kernel) { checkCuda(cudaGetLastError(), kernel); }

}  // namespace loraserve::cuda

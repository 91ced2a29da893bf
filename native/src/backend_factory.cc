#include <stdexcept>

#include "backend.h"
#include "cpu/cpu_backend.h"
#ifdef LORASERVE_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace loraserve {

std::unique_ptr<Backend> createBackend(const EngineOptions& options) {
  switch (options.device) {
    case Device::Cpu: return std::make_unique<CpuBackend>(options);
    case Device::Cuda:
#ifdef LORASERVE_WITH_CUDA
      return createCudaBackend(options);
#else
      throw std::runtime_error("device \"cuda\": this build of the native addon has no CUDA backend");
#endif
  }
  throw std::logic_error("unknown device");
}

}  // namespace loraserve

#include <stdexcept>

#include "backend.h"
#include "cpu/cpu_backend.h"

namespace loraserve {

std::unique_ptr<Backend> createBackend(const EngineOptions& options) {
  switch (options.device) {
    case Device::Cpu: return std::make_unique<CpuBackend>(options);
    case Device::Cuda:
      throw std::runtime_error("device \"cuda\": this build of the native addon has no CUDA backend");
  }
  throw std::logic_error("unknown device");
}

}  // namespace loraserve

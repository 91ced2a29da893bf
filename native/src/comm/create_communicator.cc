#include "create_communicator.h"

#include <stdexcept>
#include <string>

#ifdef LORASERVE_WITH_GLOO
#include "gloo_communicator.h"
#endif

namespace loraserve {

void validateCommConfig(const CommConfig& config) {
  if (config.world < 1) throw std::runtime_error("world must be at least 1, not " + std::to_string(config.world));
  if (config.rank < 0 || config.rank >= config.world) {
    throw std::runtime_error("rank " + std::to_string(config.rank) + " is outside a world of " +
                             std::to_string(config.world));
  }
  if (config.world == 1) return;
  if (config.masterAddr.empty()) throw std::runtime_error("tensor parallelism needs a master address");
  if (config.masterPort < 1 || config.masterPort > 65535) {
    throw std::runtime_error("master port " + std::to_string(config.masterPort) + " is not a TCP port");
  }
  if (!(config.rendezvousTimeoutSeconds > 0) || !(config.collectiveTimeoutSeconds > 0)) {
    throw std::runtime_error("the rendezvous and collective timeouts must be positive");
  }
}

std::unique_ptr<Communicator> createCpuCommunicator(const CommConfig& config) {
  validateCommConfig(config);
  if (config.world == 1) return std::make_unique<SingleRankCommunicator>();
#ifdef LORASERVE_WITH_GLOO
  return std::make_unique<GlooCommunicator>(config);
#else
  throw std::runtime_error("tensor parallelism on cpu needs Gloo: install libgloo-dev and rebuild");
#endif
}

}  // namespace loraserve

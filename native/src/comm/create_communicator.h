// Picks the CPU build's communicator for a tensor-parallel group. The CUDA build's lives with NCCL
// (nccl_communicator.h): its collectives take device memory.
#pragma once

#include <memory>

#include "comm_config.h"
#include "communicator.h"

namespace loraserve {

// Throws on a config no group can have: a rank outside the world, no port, a timeout that is not positive.
void validateCommConfig(const CommConfig& config);

// World 1: SingleRankCommunicator. Larger: GlooCommunicator, which returns once every rank has met; throws
// when the build has no Gloo.
std::unique_ptr<Communicator> createCpuCommunicator(const CommConfig& config);

}  // namespace loraserve

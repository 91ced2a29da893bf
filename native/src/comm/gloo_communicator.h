// Collectives between CPU processes over TCP with Gloo (libgloo-dev): the CPU build's tensor parallelism.
// Built only when CMake finds Gloo (LORASERVE_WITH_GLOO); create_communicator.h picks it.
#pragma once

#include <cstdint>
#include <memory>

#include "comm_config.h"
#include "communicator.h"
#include "tcp_store.h"

namespace gloo {
class Context;
}

namespace loraserve {

class GlooCommunicator final : public Communicator {
 public:
  // Meets the other ranks through the tcp store at masterAddr:masterPort and connects to each of them; returns
  // once every rank has, or throws after config.rendezvousTimeoutSeconds.
  explicit GlooCommunicator(const CommConfig& config);
  ~GlooCommunicator() override;

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  void allReduceSum(float* data, size_t count) override;
  void broadcast(void* bytes, size_t size, int root) override;
  void allGather(const float* mine, size_t count, float* all) override;
  void barrier() override;

 private:
  // Gloo matches the messages of a collective by tag; every rank calls the same sequence, so a counter agrees.
  uint32_t nextTag() { return tag_++; }

  int rank_;
  int world_;
  std::chrono::milliseconds collectiveTimeout_;
  // Kept for the communicator's life: rank 0 serves it, and a rank that finishes meeting early must not take
  // the store away from one still reading the others' addresses.
  std::unique_ptr<TcpStore> store_;
  std::shared_ptr<gloo::Context> context_;
  uint32_t tag_ = 0;
};

}  // namespace loraserve

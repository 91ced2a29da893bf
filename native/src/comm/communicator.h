// The collectives that tensor parallelism needs, behind one interface: the CPU build talks Gloo over TCP, the
// CUDA build talks NCCL, and a world of one needs neither (SingleRankCommunicator).
//
// The contract every implementation keeps:
// - Every rank calls the same collectives in the same order with the same sizes (and the same root). A rank
//   that skips one, or calls them in another order, leaves the others waiting until the timeout.
// - A failure (a peer died, a socket broke) or a collective that does not finish within the communicator's
//   timeout throws std::runtime_error naming the collective and the rank; it never hangs. After a throw the
//   communicator is unusable: tensor parallelism has no partial results to recover, so the caller tears the
//   whole group down.
// - The float pointers are in the memory the implementation works on: host memory for SingleRank and Gloo,
//   device memory for NCCL (nccl_communicator.h says how its calls are ordered on a CUDA stream).
#pragma once

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

namespace loraserve {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world() const = 0;

  // data[i] becomes the sum over ranks of their data[i], on every rank.
  virtual void allReduceSum(float* data, size_t count) = 0;
  // Every rank's bytes become root's bytes; size must be the same on every rank.
  virtual void broadcast(void* bytes, size_t size, int root) = 0;
  // all (world * count floats) becomes every rank's mine, rank-major: rank r's floats at all + r * count.
  virtual void allGather(const float* mine, size_t count, float* all) = 0;
  // Returns once every rank has entered it.
  virtual void barrier() = 0;
};

// broadcast's root must be a rank of the group; every implementation checks it the same way.
inline void checkBroadcastRoot(int root, int world) {
  if (root < 0 || root >= world) {
    throw std::runtime_error("broadcast from rank " + std::to_string(root) + " in a world of " + std::to_string(world));
  }
}

// World 1: a sum over one rank is that rank's data, so the collectives are no-ops or copies.
class SingleRankCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world() const override { return 1; }
  void allReduceSum(float*, size_t) override {}
  void broadcast(void*, size_t, int root) override { checkBroadcastRoot(root, 1); }
  void allGather(const float* mine, size_t count, float* all) override {
    if (mine != all) std::memmove(all, mine, count * sizeof(float));
  }
  void barrier() override {}
};

}  // namespace loraserve

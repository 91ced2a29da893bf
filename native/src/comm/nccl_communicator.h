// Collectives between GPUs with NCCL: the CUDA build's tensor parallelism, one process and one GPU per rank.
// Built only with the CUDA backend (LORASERVE_WITH_CUDA).
//
// Unlike the CPU communicators, allReduceSum and allGather take DEVICE pointers and are stream-ordered: they
// are queued on the communicator's stream and return at once, like a kernel launch, so the engine's next
// kernels on that stream see the result and the host does not wait. broadcast (host bytes) and barrier do
// wait, and so does synchronize. Every wait polls NCCL for an asynchronous error (a peer died, a network
// error) and gives up after the collective timeout, aborting the communicator instead of hanging: the
// communicator is non-blocking (ncclConfig_t.blocking = 0) for exactly that reason.
#pragma once

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdint>
#include <memory>

#include "../cuda/device_buffer.h"
#include "comm_config.h"
#include "communicator.h"

struct ncclComm;  // nccl.h's ncclComm_t is a pointer to it; this header need not include nccl.h

namespace loraserve {

class NcclCommunicator final : public Communicator {
 public:
  // The caller has made the rank's GPU current (cudaSetDevice). Rank 0 draws NCCL's unique id and serves it
  // from the tcp store at masterAddr:masterPort; the others fetch it; then all of them create the communicator,
  // giving up after config.rendezvousTimeoutSeconds.
  NcclCommunicator(const CommConfig& config, cudaStream_t stream);
  // Finalizes the communicator, or aborts it when that does not finish within the collective timeout.
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  // data: world-identical count floats of device memory, summed in place on the stream.
  void allReduceSum(float* data, size_t count) override;
  // bytes: host memory; staged through the device, and waited for.
  void broadcast(void* bytes, size_t size, int root) override;
  // mine: count floats of device memory; all: world * count floats of device memory, rank-major.
  void allGather(const float* mine, size_t count, float* all) override;
  void barrier() override;

  // The stream later collectives are queued on (the engine may switch streams between steps).
  void setStream(cudaStream_t stream) { stream_ = stream; }
  // Waits until everything queued on the stream has finished; throws on a NCCL error or after the timeout.
  void synchronize();

 private:
  // After a NCCL call: in non-blocking mode it may answer ncclInProgress, and the communicator must reach
  // ncclSuccess before the next call. Throws (and aborts) on an error or when what does not get there in time.
  void complete(int result, const char* what, std::chrono::milliseconds timeout);
  // Aborts the communicator and throws what went wrong; after this every call throws.
  [[noreturn]] void fail(const std::string& message);
  ncclComm* liveComm(const char* what) const;

  int rank_;
  int world_;
  // The GPU current at construction: broadcast, barrier and synchronize may run on another thread (the leader's
  // heartbeat), whose current device is its own, so they make this one current first.
  int device_;
  std::chrono::milliseconds rendezvousTimeout_;
  std::chrono::milliseconds collectiveTimeout_;
  cudaStream_t stream_;
  ncclComm* comm_ = nullptr;
  // broadcast's host bytes go through these; barrier all-reduces one float of deviceStaging_.
  cuda::DeviceBuffer<uint8_t> deviceStaging_;
  cuda::PinnedBuffer<uint8_t> hostStaging_;
};

// The CUDA build's factory, NCCL for every world size (its collectives take device memory, which
// SingleRankCommunicator's host copies cannot). Throws on an invalid config (validateCommConfig).
std::unique_ptr<NcclCommunicator> createCudaCommunicator(const CommConfig& config, cudaStream_t stream);

}  // namespace loraserve

#include "nccl_communicator.h"

#include <nccl.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "create_communicator.h"
#include "tcp_store.h"

namespace loraserve {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Short enough that a finished collective is noticed within microseconds of the GPU's own latency, long
// enough that the polling thread leaves the core to others.
void waitBriefly() { std::this_thread::sleep_for(std::chrono::microseconds(20)); }

std::string ncclError(ncclResult_t result) {
  std::string text = ncclGetErrorString(result);
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && last[0] != '\0') text += " (" + std::string(last) + ")";
  return text;
}

// Rank 0 draws the id that names this group; the others read it from rank 0's store.
ncclUniqueId shareUniqueId(const CommConfig& config, TcpStore* store) {
  ncclUniqueId id;
  if (config.rank == 0) {
    ncclResult_t result = ncclGetUniqueId(&id);
    if (result != ncclSuccess) throw std::runtime_error("ncclGetUniqueId failed: " + ncclError(result));
    if (store != nullptr) store->set("nccl_unique_id", std::vector<char>(id.internal, id.internal + sizeof(id.internal)));
    return id;
  }
  std::vector<char> bytes = store->get("nccl_unique_id");
  if (bytes.size() != sizeof(id.internal)) {
    throw std::runtime_error("the NCCL unique id from the tcp store has " + std::to_string(bytes.size()) +
                             " bytes, not " + std::to_string(sizeof(id.internal)));
  }
  std::memcpy(id.internal, bytes.data(), bytes.size());
  return id;
}

int currentDevice() {
  int device = 0;
  cuda::checkCuda(cudaGetDevice(&device), "cudaGetDevice");
  return device;
}

}  // namespace

NcclCommunicator::NcclCommunicator(const CommConfig& config, cudaStream_t stream)
    : rank_(config.rank),
      world_(config.world),
      device_(currentDevice()),
      rendezvousTimeout_(inMilliseconds(config.rendezvousTimeoutSeconds)),
      collectiveTimeout_(inMilliseconds(config.collectiveTimeoutSeconds)),
      stream_(stream) {
  validateCommConfig(config);
  deviceStaging_.resize(sizeof(float));
  // A world of one needs no store: its id never leaves the process. Larger worlds keep it only through the
  // meeting (this constructor), barrier included, so rank 0 serves it until every rank has met.
  std::unique_ptr<TcpStore> store;
  if (world_ > 1) {
    store = std::make_unique<TcpStore>(rank_, world_, config.masterAddr, config.masterPort, rendezvousTimeout_);
  }
  ncclUniqueId id = shareUniqueId(config, store.get());

  ncclConfig_t ncclConfig = NCCL_CONFIG_INITIALIZER;
  ncclConfig.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t result = ncclCommInitRankConfig(&comm, world_, id, rank_, &ncclConfig);
  comm_ = comm;
  complete(result, "ncclCommInitRankConfig", rendezvousTimeout_);
  // Init can be complete here and still under way on a peer; returning only once every rank has got this far
  // means a rank that fails right after meeting fails its peers' first collective, not their meeting.
  barrier();
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ == nullptr) return;
  cudaSetDevice(device_);
  ncclResult_t result = ncclCommFinalize(comm_);
  Clock::time_point deadline = Clock::now() + collectiveTimeout_;
  while (result == ncclInProgress && Clock::now() < deadline) {
    waitBriefly();
    ncclCommGetAsyncError(comm_, &result);
  }
  // Finalizing flushes what is still queued; a communicator that cannot do so in time is torn down by force.
  if (result == ncclSuccess) {
    ncclCommDestroy(comm_);
  } else {
    ncclCommAbort(comm_);
  }
}

ncclComm* NcclCommunicator::liveComm(const char* what) const {
  if (comm_ == nullptr) {
    throw std::runtime_error(std::string("NCCL ") + what + " on rank " + std::to_string(rank_) +
                             ": the communicator was aborted after an earlier failure");
  }
  return comm_;
}

void NcclCommunicator::fail(const std::string& message) {
  if (comm_ != nullptr) ncclCommAbort(comm_);
  comm_ = nullptr;
  throw std::runtime_error("NCCL " + message + " on rank " + std::to_string(rank_) + " of " + std::to_string(world_));
}

void NcclCommunicator::complete(int callResult, const char* what, milliseconds timeout) {
  ncclResult_t result = static_cast<ncclResult_t>(callResult);
  Clock::time_point deadline = Clock::now() + timeout;
  while (result == ncclInProgress) {
    if (Clock::now() >= deadline) {
      fail(std::string(what) + " did not complete within " + std::to_string(timeout.count()) + " ms");
    }
    waitBriefly();
    if (comm_ == nullptr) break;  // init failed before it made a communicator
    ncclCommGetAsyncError(comm_, &result);
  }
  if (result != ncclSuccess) fail(std::string(what) + " failed: " + ncclError(result));
}

void NcclCommunicator::synchronize() {
  cuda::checkCuda(cudaSetDevice(device_), "cudaSetDevice");
  ncclComm* comm = liveComm("synchronize");
  Clock::time_point deadline = Clock::now() + collectiveTimeout_;
  while (true) {
    // Polled together: a collective whose peer died never finishes, and only the async error says why.
    ncclResult_t asyncError = ncclSuccess;
    ncclCommGetAsyncError(comm, &asyncError);
    if (asyncError != ncclSuccess && asyncError != ncclInProgress) {
      fail("collective failed: " + ncclError(asyncError));
    }
    cudaError_t streamState = cudaStreamQuery(stream_);
    if (streamState == cudaSuccess) return;
    if (streamState != cudaErrorNotReady) {
      fail(std::string("stream failed: ") + cudaGetErrorString(streamState));
    }
    if (Clock::now() >= deadline) {
      fail("collectives did not finish within " + std::to_string(collectiveTimeout_.count()) +
           " ms (a peer is dead or stuck)");
    }
    waitBriefly();
  }
}

void NcclCommunicator::allReduceSum(float* data, size_t count) {
  if (count == 0) return;
  complete(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, liveComm("all-reduce"), stream_), "all-reduce",
           collectiveTimeout_);
}

void NcclCommunicator::allGather(const float* mine, size_t count, float* all) {
  if (count == 0) return;
  complete(ncclAllGather(mine, all, count, ncclFloat32, liveComm("all-gather"), stream_), "all-gather",
           collectiveTimeout_);
}

void NcclCommunicator::broadcast(void* bytes, size_t size, int root) {
  checkBroadcastRoot(root, world_);
  if (size == 0) return;
  cuda::checkCuda(cudaSetDevice(device_), "cudaSetDevice");
  if (deviceStaging_.size() < size) deviceStaging_.resize(size);
  if (hostStaging_.size() < size) hostStaging_.resize(size);
  // Pinned staging keeps both copies asynchronous: a copy to pageable memory would block this thread until
  // the broadcast finished, out of reach of the timeout.
  if (rank_ == root) {
    std::memcpy(hostStaging_.data(), bytes, size);
    cuda::checkCuda(cudaMemcpyAsync(deviceStaging_.data(), hostStaging_.data(), size, cudaMemcpyHostToDevice, stream_),
                    "cudaMemcpyAsync (broadcast upload)");
  }
  complete(ncclBroadcast(deviceStaging_.data(), deviceStaging_.data(), size, ncclUint8, root, liveComm("broadcast"),
                         stream_),
           "broadcast", collectiveTimeout_);
  cuda::checkCuda(cudaMemcpyAsync(hostStaging_.data(), deviceStaging_.data(), size, cudaMemcpyDeviceToHost, stream_),
                  "cudaMemcpyAsync (broadcast download)");
  synchronize();
  std::memcpy(bytes, hostStaging_.data(), size);
}

void NcclCommunicator::barrier() {
  cuda::checkCuda(cudaSetDevice(device_), "cudaSetDevice");
  float* one = reinterpret_cast<float*>(deviceStaging_.data());
  complete(ncclAllReduce(one, one, 1, ncclFloat32, ncclSum, liveComm("barrier"), stream_), "barrier",
           collectiveTimeout_);
  synchronize();
}

std::unique_ptr<NcclCommunicator> createCudaCommunicator(const CommConfig& config, cudaStream_t stream) {
  return std::make_unique<NcclCommunicator>(config, stream);
}

}  // namespace loraserve

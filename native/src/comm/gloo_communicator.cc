#include "gloo_communicator.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

namespace loraserve {

namespace {

using std::chrono::milliseconds;

// Gloo's view of our tcp store; connectFullMesh swaps every rank's pair addresses through it.
class GlooStoreOverTcp final : public gloo::rendezvous::Store {
 public:
  explicit GlooStoreOverTcp(TcpStore& store) : store_(store) {}

  void set(const std::string& key, const std::vector<char>& data) override { store_.set(key, data); }
  std::vector<char> get(const std::string& key) override { return store_.get(key); }
  void wait(const std::vector<std::string>& keys) override { wait(keys, store_.timeout()); }
  void wait(const std::vector<std::string>& keys, const milliseconds& timeout) override {
    // Gloo passes kNoTimeout (zero) for "no limit of its own": ours still holds.
    milliseconds limit = timeout.count() > 0 ? timeout : store_.timeout();
    for (const std::string& key : keys) store_.get(key, limit);
  }

 private:
  TcpStore& store_;
};

// The local address this machine reaches host from: a UDP connect sends nothing, only picks the route.
std::string localAddressToward(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr) {
    throw std::runtime_error("cannot resolve the master address " + host);
  }
  std::string local;
  int fd = ::socket(found->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_storage mine{};
  socklen_t length = sizeof(mine);
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &length) == 0) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* address = mine.ss_family == AF_INET6
                              ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&mine)->sin6_addr)
                              : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&mine)->sin_addr);
    if (::inet_ntop(mine.ss_family, address, text, sizeof(text)) != nullptr) local = text;
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(found);
  if (local.empty()) throw std::runtime_error("no route from this machine to the master address " + host);
  return local;
}

// Gloo's exceptions say where in Gloo they came from; ours add which collective and which rank.
[[noreturn]] void rethrow(const std::string& what, int rank, int world, const std::exception& error) {
  throw std::runtime_error("gloo " + what + " failed on rank " + std::to_string(rank) + " of " +
                           std::to_string(world) + ": " + error.what());
}

}  // namespace

GlooCommunicator::GlooCommunicator(const CommConfig& config)
    : rank_(config.rank), world_(config.world), collectiveTimeout_(inMilliseconds(config.collectiveTimeoutSeconds)) {
  milliseconds rendezvousTimeout = inMilliseconds(config.rendezvousTimeoutSeconds);
  store_ = std::make_unique<TcpStore>(rank_, world_, config.masterAddr, config.masterPort, rendezvousTimeout);
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = config.bindAddr.empty() ? localAddressToward(config.masterAddr, config.masterPort) : config.bindAddr;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank_, world_);
    // Meeting waits as long as the rendezvous may take; the collectives after it only as long as one may.
    context->setTimeout(rendezvousTimeout);
    GlooStoreOverTcp store(*store_);
    context->connectFullMesh(store, device);
    // A rank's own pairs can be connected while a peer's are still connecting: without this barrier, a rank
    // that returns and dies at once fails the peer's rendezvous instead of its first collective.
    gloo::BarrierOptions met(context);
    met.setTag(nextTag());
    met.setTimeout(rendezvousTimeout);
    gloo::barrier(met);
    context->setTimeout(collectiveTimeout_);
    context_ = std::move(context);
  } catch (const std::exception& error) {
    rethrow("rendezvous at " + config.masterAddr + ":" + std::to_string(config.masterPort), rank_, world_, error);
  }
}

GlooCommunicator::~GlooCommunicator() = default;

void GlooCommunicator::allReduceSum(float* data, size_t count) {
  if (count == 0) return;
  try {
    gloo::AllreduceOptions options(context_);
    options.setOutput(data, count);  // no input: in place
    options.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
    options.setTag(nextTag());
    options.setTimeout(collectiveTimeout_);
    gloo::allreduce(options);
  } catch (const std::exception& error) {
    rethrow("all-reduce of " + std::to_string(count) + " floats", rank_, world_, error);
  }
}

void GlooCommunicator::broadcast(void* bytes, size_t size, int root) {
  checkBroadcastRoot(root, world_);
  if (size == 0) return;
  try {
    gloo::BroadcastOptions options(context_);
    options.setOutput(static_cast<uint8_t*>(bytes), size);  // no input: root sends its output buffer
    options.setRoot(root);
    options.setTag(nextTag());
    options.setTimeout(collectiveTimeout_);
    gloo::broadcast(options);
  } catch (const std::exception& error) {
    rethrow("broadcast of " + std::to_string(size) + " bytes from rank " + std::to_string(root), rank_, world_, error);
  }
}

void GlooCommunicator::allGather(const float* mine, size_t count, float* all) {
  if (count == 0) return;
  try {
    gloo::AllgatherOptions options(context_);
    // Gloo takes a non-const pointer for every buffer but only reads the input.
    options.setInput(const_cast<float*>(mine), count);
    options.setOutput(all, count * static_cast<size_t>(world_));
    options.setTag(nextTag());
    options.setTimeout(collectiveTimeout_);
    gloo::allgather(options);
  } catch (const std::exception& error) {
    rethrow("all-gather of " + std::to_string(count) + " floats", rank_, world_, error);
  }
}

void GlooCommunicator::barrier() {
  try {
    gloo::BarrierOptions options(context_);
    options.setTag(nextTag());
    options.setTimeout(collectiveTimeout_);
    gloo::barrier(options);
  } catch (const std::exception& error) {
    rethrow("barrier", rank_, world_, error);
  }
}

}  // namespace loraserve

#include "tcp_store_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "tcp_frames.h"

namespace loraserve {

namespace {

int listenOn(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  std::string where = host + ":" + std::to_string(port);
  int status = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (status != 0) throw std::runtime_error("tcp store: cannot resolve " + where + ": " + ::gai_strerror(status));
  std::string lastError = "no address";
  for (addrinfo* candidate = found; candidate != nullptr; candidate = candidate->ai_next) {
    int fd = ::socket(candidate->ai_family, candidate->ai_socktype | SOCK_CLOEXEC, candidate->ai_protocol);
    if (fd < 0) {
      lastError = std::strerror(errno);
      continue;
    }
    // A group restarted on the same port must not wait for the last run's sockets to leave TIME_WAIT.
    int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (::bind(fd, candidate->ai_addr, candidate->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      ::freeaddrinfo(found);
      return fd;
    }
    lastError = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(found);
  throw std::runtime_error("rank 0 cannot serve the tcp store on " + where + ": " + lastError +
                           " (is the port taken, or the address not this machine's?)");
}

}  // namespace

TcpStoreServer::TcpStoreServer(const std::string& host, int port, int world)
    : world_(world), listenFd_(listenOn(host, port)) {
  acceptThread_ = std::thread([this] { acceptClients(); });
}

TcpStoreServer::~TcpStoreServer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    // Wakes client threads blocked in recv; each closes its own fd, so none is closed twice or reused early.
    for (int fd : clientFds_) ::shutdown(fd, SHUT_RDWR);
  }
  changed_.notify_all();
  acceptThread_.join();
  for (std::thread& thread : clientThreads_) thread.join();
  ::close(listenFd_);
}

void TcpStoreServer::acceptClients() {
  while (!stopping_) {
    // Poll with a short timeout rather than block in accept, so the destructor's stopping_ is seen.
    pollfd waiting{listenFd_, POLLIN, 0};
    int ready = ::poll(&waiting, 1, 100);
    if (ready <= 0) continue;  // timeout or EINTR
    int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // the client gave up between poll and accept, or EINTR
    int on = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    clientFds_.insert(fd);
    clientThreads_.emplace_back([this, fd] { serveClient(fd); });
  }
}

void TcpStoreServer::serveClient(int fd) {
  try {
    while (!stopping_ && answerRequest(fd)) {
    }
  } catch (const std::exception&) {
    // A client that breaks the protocol or vanishes loses its connection; the others are unaffected.
  }
  std::lock_guard<std::mutex> lock(mutex_);
  clientFds_.erase(fd);
  ::close(fd);
}

bool TcpStoreServer::answerRequest(int fd) {
  std::string operation;
  try {
    operation = receiveTextFrame(fd);
  } catch (const std::exception&) {
    return false;  // the client closed its connection between requests: the normal end
  }
  std::string key = receiveTextFrame(fd);
  std::vector<char> payload = receiveFrame(fd);

  if (operation == "hello") {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      seenRanks_.insert(std::stoi(key));
    }
    sendFrame(fd, "ok");
    sendFrame(fd, "");
    return true;
  }
  if (operation == "set") {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      values_[key] = std::move(payload);
    }
    changed_.notify_all();
    sendFrame(fd, "ok");
    sendFrame(fd, "");
    return true;
  }
  if (operation == "get") {
    auto wait = std::chrono::milliseconds(std::stoll(std::string(payload.begin(), payload.end())));
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, wait, [&] { return stopping_ || values_.count(key) > 0; });
    if (stopping_) return false;
    auto value = values_.find(key);
    if (value == values_.end()) {
      std::string notSeen = ranksNotSeen();
      lock.unlock();
      sendFrame(fd, "missing");
      sendFrame(fd, notSeen);
      return true;
    }
    std::vector<char> copy = value->second;
    lock.unlock();
    sendFrame(fd, "ok");
    sendFrame(fd, copy.data(), copy.size());
    return true;
  }
  throw std::runtime_error("unknown tcp store operation '" + operation + "'");
}

std::string TcpStoreServer::ranksNotSeen() const {
  std::string ranks;
  for (int rank = 0; rank < world_; ++rank) {
    if (seenRanks_.count(rank) > 0) continue;
    ranks += (ranks.empty() ? "" : ", ") + std::to_string(rank);
  }
  return ranks.empty() ? "every rank has connected to the store" : "ranks not yet seen by the store: " + ranks;
}

}  // namespace loraserve

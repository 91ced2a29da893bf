#include "tcp_store.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "tcp_frames.h"

namespace loraserve {

namespace {

using Clock = std::chrono::steady_clock;

std::string seconds(std::chrono::milliseconds duration) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f s", duration.count() / 1000.0);
  return text;
}

// One connect attempt that gives up at deadline: a blocking connect to an unreachable host would wait for the
// kernel's SYN timeout (minutes), far past ours. Returns the fd, or -1 with *error set.
int connectBefore(const addrinfo& address, Clock::time_point deadline, std::string* error) {
  int fd = ::socket(address.ai_family, address.ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, address.ai_protocol);
  if (fd < 0) {
    *error = std::strerror(errno);
    return -1;
  }
  int status = ::connect(fd, address.ai_addr, address.ai_addrlen);
  if (status != 0 && errno == EINPROGRESS) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd waiting{fd, POLLOUT, 0};
    int ready = ::poll(&waiting, 1, static_cast<int>(left > 0 ? left : 0));
    int socketError = ETIMEDOUT;
    socklen_t length = sizeof(socketError);
    if (ready > 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &socketError, &length);
    status = socketError == 0 ? 0 : -1;
    errno = socketError;
  }
  if (status != 0) {
    *error = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  return fd;
}

void setReceiveTimeout(int fd, std::chrono::milliseconds timeout) {
  timeval value{};
  value.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  value.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, sizeof(value));
}

}  // namespace

TcpStore::TcpStore(int rank, int world, const std::string& host, int port, std::chrono::milliseconds timeout)
    : host_(host), port_(port), timeout_(timeout) {
  if (rank == 0) server_ = std::make_unique<TcpStoreServer>(host, port, world);

  Clock::time_point deadline = Clock::now() + timeout;
  std::string lastError;
  while (fd_ < 0) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    int status = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
    if (status != 0) {
      lastError = std::string("cannot resolve the host: ") + ::gai_strerror(status);
    } else {
      for (addrinfo* candidate = found; candidate != nullptr && fd_ < 0; candidate = candidate->ai_next) {
        fd_ = connectBefore(*candidate, deadline, &lastError);
      }
      ::freeaddrinfo(found);
    }
    if (fd_ >= 0) break;
    if (Clock::now() >= deadline) {
      throw std::runtime_error("rank " + std::to_string(rank) + " could not reach the tcp store at " + address() +
                               " within " + seconds(timeout) + " (rank 0 serves it): " + lastError);
    }
    // Most often rank 0 has not started yet: connection refused.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::vector<char> reply;
  try {
    request("hello", std::to_string(rank), {}, timeout, &reply);
  } catch (...) {
    close();  // a throwing constructor runs no destructor
    throw;
  }
}

TcpStore::~TcpStore() { close(); }

void TcpStore::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  server_.reset();
}

void TcpStore::set(const std::string& key, const std::vector<char>& value) {
  std::vector<char> reply;
  request("set", key, value, timeout_, &reply);
}

std::vector<char> TcpStore::get(const std::string& key) { return get(key, timeout_); }

std::vector<char> TcpStore::get(const std::string& key, std::chrono::milliseconds timeout) {
  std::string wait = std::to_string(timeout.count());
  std::vector<char> reply;
  // The server answers within timeout; the margin is for the answer to travel.
  std::string status = request("get", key, {wait.begin(), wait.end()}, timeout + std::chrono::seconds(5), &reply);
  if (status == "ok") return reply;
  throw std::runtime_error("key '" + key + "' did not appear in the tcp store at " +
                           address() + " within " + seconds(timeout) + "; " + std::string(reply.begin(), reply.end()));
}

std::string TcpStore::request(const std::string& operation, const std::string& key, const std::vector<char>& payload,
                              std::chrono::milliseconds replyWithin, std::vector<char>* reply) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ < 0) throw std::runtime_error("the tcp store at " + address() + " is closed");
  try {
    setReceiveTimeout(fd_, replyWithin);
    sendFrame(fd_, operation);
    sendFrame(fd_, key);
    sendFrame(fd_, payload.data(), payload.size());
    std::string status = receiveTextFrame(fd_);
    *reply = receiveFrame(fd_);
    return status;
  } catch (const std::exception& error) {
    throw std::runtime_error("tcp store " + operation + " '" + key + "' at " +
                             address() + " failed: " + error.what());
  }
}

std::string TcpStore::address() const { return host_ + ":" + std::to_string(port_); }

}  // namespace loraserve

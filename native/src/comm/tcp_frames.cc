#include "tcp_frames.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace loraserve {

namespace {

// A rendezvous value is an address or an id, never near this; a larger length means the stream is garbage.
constexpr uint32_t kMaxFrameBytes = 64u << 20;

void sendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    // MSG_NOSIGNAL: a peer that has gone is an error to report, not a SIGPIPE that kills the process.
    ssize_t sent = ::send(fd, data, size, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("send failed: ") + std::strerror(errno));
    }
    data += sent;
    size -= static_cast<size_t>(sent);
  }
}

void receiveAll(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t got = ::recv(fd, data, size, 0);
    if (got == 0) throw std::runtime_error("the peer closed the connection");
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) throw std::runtime_error("no reply before the timeout");
      throw std::runtime_error(std::string("receive failed: ") + std::strerror(errno));
    }
    data += got;
    size -= static_cast<size_t>(got);
  }
}

}  // namespace

void sendFrame(int fd, const void* data, size_t size) {
  if (size > kMaxFrameBytes) throw std::runtime_error("message of " + std::to_string(size) + " bytes is too large");
  uint32_t length = htonl(static_cast<uint32_t>(size));
  sendAll(fd, reinterpret_cast<const char*>(&length), sizeof(length));
  sendAll(fd, static_cast<const char*>(data), size);
}

void sendFrame(int fd, const std::string& text) { sendFrame(fd, text.data(), text.size()); }

std::vector<char> receiveFrame(int fd) {
  uint32_t length = 0;
  receiveAll(fd, reinterpret_cast<char*>(&length), sizeof(length));
  length = ntohl(length);
  if (length > kMaxFrameBytes) throw std::runtime_error("message of " + std::to_string(length) + " bytes is too large");
  std::vector<char> bytes(length);
  receiveAll(fd, bytes.data(), bytes.size());
  return bytes;
}

std::string receiveTextFrame(int fd) {
  std::vector<char> bytes = receiveFrame(fd);
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace loraserve

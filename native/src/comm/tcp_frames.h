// Length-prefixed messages over a connected TCP socket: a 4-byte big-endian length, then that many bytes.
// The rendezvous store (tcp_store.h, tcp_store_server.h) speaks nothing else.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace loraserve {

// Throw std::runtime_error when the peer has gone, the socket fails, or a receive timeout set on the socket
// (SO_RCVTIMEO) runs out.
void sendFrame(int fd, const void* data, size_t size);
void sendFrame(int fd, const std::string& text);
std::vector<char> receiveFrame(int fd);
std::string receiveTextFrame(int fd);

}  // namespace loraserve

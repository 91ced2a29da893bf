// The rendezvous of a tensor-parallel group over TCP at the leader's address: rank 0 serves a small key-value
// store (tcp_store_server.h) on masterAddr:masterPort, and every rank, rank 0 included, is a client of it. The
// communicators use it once, at startup, to swap what they need to connect to each other (Gloo's addresses,
// NCCL's unique id).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tcp_store_server.h"

namespace loraserve {

class TcpStore {
 public:
  // Rank 0 starts the server first; then every rank connects, retrying until timeout because the others may
  // start before rank 0 does. timeout is also how long get waits for a key.
  TcpStore(int rank, int world, const std::string& host, int port, std::chrono::milliseconds timeout);
  ~TcpStore();

  TcpStore(const TcpStore&) = delete;
  TcpStore& operator=(const TcpStore&) = delete;

  void set(const std::string& key, const std::vector<char>& value);
  // Waits until some rank has set key; throws after the timeout, naming the key, the address and the ranks
  // that have not connected yet.
  std::vector<char> get(const std::string& key);
  std::vector<char> get(const std::string& key, std::chrono::milliseconds timeout);
  // Disconnects; on rank 0 also stops the server, so call it only once no rank needs the store any more.
  void close();

  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  // One request and its reply; returns the reply's status and sets *reply to its payload.
  std::string request(const std::string& operation, const std::string& key, const std::vector<char>& payload,
                      std::chrono::milliseconds replyWithin, std::vector<char>* reply);
  std::string address() const;

  const std::string host_;
  const int port_;
  const std::chrono::milliseconds timeout_;
  std::unique_ptr<TcpStoreServer> server_;  // rank 0 only
  std::mutex mutex_;  // one request at a time on the connection
  int fd_ = -1;
};

}  // namespace loraserve

// The rendezvous store's server, run by rank 0 on a thread: a key-value map that every rank (rank 0 too)
// reaches over TCP, so a tensor-parallel group needs no shared file system. Values are written once and read
// by the others; a read of a key that does not exist yet waits for it.
//
// The protocol (tcp_frames.h): a request is three frames (operation, key, payload), a reply two (status,
// payload).
//   hello <rank> -           -> ok -         a client says which rank it is, for the "not yet seen" list
//   set   <key>  <value>     -> ok -
//   get   <key>  <wait ms>   -> ok <value> | missing <which ranks have not connected yet>
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace loraserve {

class TcpStoreServer {
 public:
  // Listens on host:port before returning, so rank 0's own client can connect at once; throws when the address
  // cannot be bound (the port is taken, or host is not one of this machine's addresses).
  TcpStoreServer(const std::string& host, int port, int world);
  // Stops accepting, disconnects every client, and joins every thread.
  ~TcpStoreServer();

  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

 private:
  void acceptClients();
  void serveClient(int fd);
  // One request and its reply; false when the client has gone.
  bool answerRequest(int fd);
  std::string ranksNotSeen() const;  // under mutex_

  const int world_;
  int listenFd_ = -1;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;
  std::condition_variable changed_;  // a key was set, or the server is stopping
  std::map<std::string, std::vector<char>> values_;
  std::set<int> seenRanks_;
  std::set<int> clientFds_;  // open connections, shut down by the destructor to wake their threads

  std::thread acceptThread_;
  std::vector<std::thread> clientThreads_;  // only acceptThread_ adds to it; joined after acceptThread_
};

}  // namespace loraserve

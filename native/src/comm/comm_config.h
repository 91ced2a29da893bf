// Where a tensor-parallel group meets and how long it waits: the same on every rank except `rank`.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace loraserve {

struct CommConfig {
  int rank = 0;
  int world = 1;
  // Rank 0 serves the rendezvous store here (tcp_store.h); every rank must be able to reach it.
  std::string masterAddr = "127.0.0.1";
  int masterPort = 29500;
  // Ranks start at different times (each loads its weights first), so meeting may take minutes...
  double rendezvousTimeoutSeconds = 300;
  // ...but once met, a collective that takes this long means a peer is dead or stuck.
  double collectiveTimeoutSeconds = 30;
  // The local address Gloo listens on for its peers; empty: the one this machine reaches masterAddr from.
  std::string bindAddr;
};

inline std::chrono::milliseconds inMilliseconds(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

}  // namespace loraserve

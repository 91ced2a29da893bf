// The leader's end of a tensor-parallel group: it owns the order in which the group's communicator is used.
// A step's command and the step's own collectives run as one unit (runStep), so nothing interleaves with them;
// adapter loads and unloads (and the loop's resumes from idle) are queued and go out, in the order they
// happened, before the next step or heartbeat, so a follower's slots change exactly where the leader's did
// between steps. A heartbeat goes out when the group has been idle for `heartbeatInterval`, so followers never
// wait longer than the collective timeout and a dead rank is noticed while idle too. The first failure breaks
// the link for good: the group has no partial state worth saving (the shard reports it and exits).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../comm/communicator.h"

namespace loraserve {

class LeaderLink {
 public:
  LeaderLink(Communicator& communicator, std::chrono::milliseconds heartbeatInterval);
  // stop().
  ~LeaderLink();
  LeaderLink(const LeaderLink&) = delete;
  LeaderLink& operator=(const LeaderLink&) = delete;

  // Any thread: goes out before the next step or heartbeat.
  void enqueue(std::vector<uint8_t> command);
  // Worker thread: sends what is queued, then `command`, then runs `collectives` (the step's forward) with
  // the communicator held. Throws, and breaks the link, when any of it fails.
  template <typename Result>
  Result runStep(std::vector<uint8_t> command, const std::function<Result()>& collectives) {
    std::lock_guard<std::mutex> lock(communicatorMutex_);
    throwIfBroken();
    try {
      sendQueued();
      sendNow(std::move(command));
      return collectives();
    } catch (const std::exception& error) {
      breakLink(error.what());
      throw;
    }
  }
  // Blocks until the link breaks (returns why) or stops.
  std::string waitUntilBroken();
  // JS thread: tells the followers to stop (when the link still works: after the running step, if any) and ends
  // the heartbeat. Later calls do nothing.
  void stop();

 private:
  void sendQueued();
  void sendNow(std::vector<uint8_t> command);
  void breakLink(const std::string& why);
  void throwIfBroken();
  void heartbeatLoop();

  Communicator& communicator_;
  const std::chrono::milliseconds heartbeatInterval_;
  std::mutex communicatorMutex_;  // held while the communicator is in use
  std::mutex stateMutex_;         // guards the fields below
  std::condition_variable stateChanged_;
  std::vector<std::vector<uint8_t>> queued_;
  std::chrono::steady_clock::time_point lastSent_;
  bool stopping_ = false;
  std::atomic<bool> broken_{false};  // set under stateMutex_, read anywhere
  std::string brokenBecause_;
  std::thread heartbeat_;
};

}  // namespace loraserve

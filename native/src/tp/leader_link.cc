#include "leader_link.h"

#include <stdexcept>

#include "rank_commands.h"

namespace loraserve {

LeaderLink::LeaderLink(Communicator& communicator, std::chrono::milliseconds heartbeatInterval)
    : communicator_(communicator),
      heartbeatInterval_(heartbeatInterval),
      lastSent_(std::chrono::steady_clock::now()),
      heartbeat_([this] { heartbeatLoop(); }) {}

LeaderLink::~LeaderLink() { stop(); }

void LeaderLink::stop() {
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  stateChanged_.notify_all();
  heartbeat_.join();
  std::lock_guard<std::mutex> lock(communicatorMutex_);
  if (broken_) return;
  try {
    sendQueued();
    sendNow(encodeStop());
  } catch (const std::exception&) {
    // The followers are gone already; they stop either way.
  }
}

void LeaderLink::enqueue(std::vector<uint8_t> command) {
  std::lock_guard<std::mutex> lock(stateMutex_);
  queued_.push_back(std::move(command));
}

std::string LeaderLink::waitUntilBroken() {
  std::unique_lock<std::mutex> lock(stateMutex_);
  stateChanged_.wait(lock, [this] { return broken_ || stopping_; });
  return broken_ ? brokenBecause_ : "the group is stopping";
}

// Callers hold communicatorMutex_.
void LeaderLink::sendQueued() {
  std::vector<std::vector<uint8_t>> commands;
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    commands.swap(queued_);
  }
  for (std::vector<uint8_t>& command : commands) sendNow(std::move(command));
}

void LeaderLink::sendNow(std::vector<uint8_t> command) {
  sendRankCommand(communicator_, std::move(command));
  std::lock_guard<std::mutex> lock(stateMutex_);
  lastSent_ = std::chrono::steady_clock::now();
}

void LeaderLink::breakLink(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    if (broken_) return;
    broken_ = true;
    brokenBecause_ = why;
  }
  stateChanged_.notify_all();
}

void LeaderLink::throwIfBroken() {
  std::lock_guard<std::mutex> lock(stateMutex_);
  if (broken_) throw std::runtime_error("tensor-parallel group is down: " + brokenBecause_);
}

void LeaderLink::heartbeatLoop() {
  std::unique_lock<std::mutex> state(stateMutex_);
  while (!stopping_ && !broken_) {
    const auto due = lastSent_ + heartbeatInterval_;
    if (std::chrono::steady_clock::now() < due) {
      stateChanged_.wait_until(state, due);
      continue;
    }
    state.unlock();
    {
      std::lock_guard<std::mutex> lock(communicatorMutex_);
      try {
        if (!broken_) {
          sendQueued();
          sendNow(encodeHeartbeat());
        }
      } catch (const std::exception& error) {
        breakLink(error.what());
      }
    }
    state.lock();
  }
}

}  // namespace loraserve

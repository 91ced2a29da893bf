// The seam between the backend-independent engine (validation, adapter slots, sampling) and the code that
// holds the weights and runs the model on one kind of hardware. The CPU backend (cpu/cpu_backend.h) is the
// reference; a device backend implements the same interface.
//
// Threading contract, kept by the engine (engine.h): forward() runs on one worker thread at a time;
// loadAdapter() may run on another worker thread during a forward, always for a slot that no running step
// uses, and must publish the slot atomically; unloadAdapter() runs on the JS thread, only for a slot that no
// running step uses.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "engine_options.h"
#include "forward_batch.h"
#include "host_adapter.h"

namespace loraserve {

class Backend {
 public:
  virtual ~Backend() = default;

  // The group's collectives: the engine sends the leader's commands through it (tp/leader_link.h), the backend
  // all-reduces and gathers inside forward(). A world of one has a SingleRankCommunicator.
  virtual Communicator& communicator() = 0;

  // Seconds this rank has spent in the all-reduces and all-gathers of its steps; 0 where the backend cannot
  // tell (NCCL's collectives are queued on the GPU's stream, not waited for).
  virtual double collectiveSeconds() const { return 0; }

  // Bytes of base weights this rank holds.
  virtual size_t weightBytes() const = 0;

  // A backend with its own device memory sizes the KV cache when EngineOptions.numKvBlocks is 0 and reports the
  // block count it chose here; the engine gives the others a count.
  virtual int sizedKvBlocks() const { return 0; }
  // The same for the adapter slots when EngineOptions.maxLoras is -1.
  virtual int sizedMaxLoras() const { return 0; }

  // Installs an adapter (checked against the base, this rank's windows known, tensors still in their files or
  // host bytes) in a free slot.
  virtual void loadAdapter(int slot, const CheckedAdapter& adapter) = 0;
  virtual void unloadAdapter(int slot) = 0;


  // Runs the batch through the model: writes its K/V into the paged cache at each row's position through the
  // segment's block table, attends causally over each sequence's cached positions, and answers every
  // batch.logitRequests entry (same order) from that row's float32 logits, as sampler.h's evaluateLogits
  // defines. Inputs are validated (engine.h). In a group every rank runs the same batch; only rank 0 answers
  // (the others return no results).
  virtual std::vector<LogitResult> forward(const ForwardBatch& batch) = 0;
};

// The backend that options.device names. Throws when that backend is not built or cannot serve the options.
std::unique_ptr<Backend> createBackend(const EngineOptions& options);

}  // namespace loraserve

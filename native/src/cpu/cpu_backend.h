// The reference backend: float32 on the CPU, OpenBLAS for the matrix products.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "../backend.h"
#include "../comm/timed_communicator.h"
#include "../host_weights.h"
#include "../tensor_parallel.h"
#include "kv_cache.h"
#include "paged_attention.h"
#include "thread_pool.h"

namespace loraserve {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const EngineOptions& options);

  Communicator& communicator() override { return *communicator_; }
  double collectiveSeconds() const override { return communicator_->collectiveSeconds(); }
  size_t weightBytes() const override { return weightBytes_; }
  void loadAdapter(int slot, const CheckedAdapter& adapter) override;
  void unloadAdapter(int slot) override;
  std::vector<LogitResult> forward(const ForwardBatch& batch) override;

 private:
  // The output projection's logits of this rank's vocabulary rows, gathered into whole rows on rank 0.
  std::vector<float> wholeLogitRows(std::vector<float> local, int64_t rows) const;

  ModelSpec spec_;
  ShardLayout layout_;
  // First: a group that cannot meet fails before any weight is read.
  std::unique_ptr<TimedCommunicator> communicator_;
  AttentionShape attention_;
  HostModelWeights weights_;
  size_t weightBytes_;
  std::vector<float> ropeInvFreq_;
  KvCache cache_;
  ThreadPool pool_;
  // Slots are swapped under the mutex; a forward copies the pointers it needs, so a concurrent load or unload
  // of another slot never touches what it reads.
  std::mutex adaptersMutex_;
  std::vector<std::shared_ptr<const HostAdapter>> adapters_;
};

}  // namespace loraserve

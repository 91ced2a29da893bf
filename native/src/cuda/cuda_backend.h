// The CUDA backend: 16-bit weights and paged KV cache on the GPU, cuBLAS matrix products, the kernels of this
// folder, adapters in device slots, token selection on the GPU, and decode steps replayed as CUDA graphs.
//
// Numerics: the residual stream stays float32 between layers; matrix products take 16-bit operands (T: float16
// or bfloat16, EngineOptions dtype) and accumulate and write float32; what feeds the next product (normed
// activations, attention output, q, K/V) is rounded to T (docs/performance.md "Precision": how far each type
// lands from the float32 reference, and why float16 is the default).
//
// Memory: with EngineOptions.numKvBlocks 0 the KV cache is allocated last and fills what the weights, adapter
// slots, activations and workspaces leave of gpuMemoryFraction of the card.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "../backend.h"
#include "../comm/nccl_communicator.h"
#include "../tensor_parallel.h"
#include "adapter_slots.h"
#include "device_buffer.h"
#include "device_weights.h"
#include "gemm.h"
#include "paged_kv.cuh"
#include "step_plan.h"
#include "token_select.cuh"

namespace loraserve {

// The backend for options.dtype.
std::unique_ptr<Backend> createCudaBackend(const EngineOptions& options);

template <typename T>
class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const EngineOptions& options);
  ~CudaBackend() override;

  Communicator& communicator() override { return nccl_ ? static_cast<Communicator&>(*nccl_) : singleRank_; }
  size_t weightBytes() const override { return weights_.bytes(); }
  int sizedKvBlocks() const override { return numKvBlocks_; }
  int sizedMaxLoras() const override { return adapters_.count(); }
  void loadAdapter(int slot, const CheckedAdapter& adapter) override;
  void unloadAdapter(int slot) override;
  std::vector<LogitResult> forward(const ForwardBatch& batch) override;

 private:
  // Where one part's step descriptors sit in the device copy of the staging area.
  struct DeviceStep {
    int rows = 0, logitRows = 0, loraTiles = 0, maxLoraTileRows = 0, decodeItems = 0, prefillTiles = 0;
    bool lora = false;
    const int32_t* tokens = nullptr;
    const int32_t* positions = nullptr;
    const int32_t* cacheSlots = nullptr;
    const int32_t* logitRowIndex = nullptr;
    const cuda::LoraTile* loraTileList = nullptr;
    const cuda::DecodeItem* decodeItemList = nullptr;
    const cuda::PrefillTile* prefillTileList = nullptr;
    const int32_t* blockTables = nullptr;
  };
  // A decode step's graph depends on its batch size and on whether adapters run.
  using GraphKey = std::pair<int, bool>;

  // Runs the batch; the logits of its requested rows end in logits_ in order and the answers in results_.
  void run(const ForwardBatch& batch);
  DeviceStep upload(const cuda::StepPlan& plan, bool padLoraTiles);
  void enqueueForward(const DeviceStep& step, float* logits);
  void enqueueSelect(int rows);
  void runGraph(const GraphKey& key, const DeviceStep& step);
  void ensureLogitRows(int rows);
  void dropGraphs();
  int decodeSplits(int items) const;
  // The KV blocks that fit the engine's share of device memory after everything else is allocated.
  // Device bytes: gpuMemoryFraction of the total less what the engine holds (room, never more than is free).
  struct MemoryRoom {
    double room = 0, held = 0, free = 0, total = 0;
  };
  MemoryRoom memoryRoom(double gpuMemoryFraction) const;
  int kvBlocksThatFit(double gpuMemoryFraction) const;
  // EngineOptions.maxLoras -1: the slots that fit in adapterMemoryFraction of the engine's room after the weights.
  int slotsThatFit(const EngineOptions& options) const;
  cuda::PagedKv<T> pagedKv(int layer, const int32_t* blockTables) const;

  // Makes this rank's GPU current on the calling thread: the engine calls in from worker threads, whose current
  // device is their own.
  void useDevice() const;

  // First: every CUDA call below, from the constructor on, is made on this GPU.
  int device_;
  ModelSpec spec_;
  ShardLayout layout_;
  int blockSize_;
  int numKvBlocks_ = 0;
  int qWidth_, kvWidth_, qkvWidth_, intermediate_;
  int multiprocessors_ = 0;
  size_t freeBeforeLoad_ = 0;  // free device memory before the engine allocated anything
  cudaStream_t stream_ = nullptr;
  // The tensor-parallel path: NCCL's all-reduces of the row-parallel projections' partial sums, on stream_ (and
  // so inside the decode graphs). Null on the plain path (world 1 unless EngineOptions.tensorParallelPath).
  std::unique_ptr<NcclCommunicator> nccl_;
  SingleRankCommunicator singleRank_;
  cuda::DeviceModelWeights<T> weights_;
  cuda::AdapterSlots<T> adapters_;
  std::unique_ptr<cuda::Gemm> gemm_;
  cuda::DeviceBuffer<float> ropeInvFreq_;
  cuda::DeviceBuffer<T> kvCache_;  // [layers][K, V][numKvBlocks * blockSize][kvHeads][headDim]
  std::vector<cuda::LoraGroup> qkvGroups_, oGroups_, gateUpGroups_, downGroups_;

  // Activations for up to kTokenBudget rows, reused by every layer.
  cuda::DeviceBuffer<float> residual_, qkv_, gateUp_, loraV_, splitScratch_;
  cuda::DeviceBuffer<T> normed_, q_, attention_, activated_, logitInputs_;
  cuda::DeviceBuffer<float> logits_;
  // On the tensor-parallel path: this rank's vocabulary columns of the logit rows, and every rank's, gathered.
  cuda::DeviceBuffer<float> localLogits_, gatheredLogits_;
  int logitCapacity_ = 0;

  cuda::PinnedBuffer<unsigned char> stagingHost_;
  cuda::DeviceBuffer<unsigned char> stagingDevice_;
  cuda::PinnedBuffer<cuda::TokenRequest> requestsHost_;
  cuda::DeviceBuffer<cuda::TokenRequest> requests_;
  cuda::PinnedBuffer<cuda::TokenResult> resultsHost_;
  cuda::DeviceBuffer<cuda::TokenResult> results_;

  std::map<GraphKey, cudaGraphExec_t> graphs_;
};

}  // namespace loraserve

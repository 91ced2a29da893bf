#include "cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "../counter_rng.h"
#include "../forward_batch.h"
#include "../rope_frequencies.h"
#include "../sampler.h"
#include "cuda_check.h"
#include "decode_attention.cuh"
#include "embed_rows.cuh"
#include "half_types.cuh"
#include "lora_shrink_expand.cuh"
#include "prefill_attention.cuh"
#include "rmsnorm.cuh"
#include "rope_kv_write.cuh"
#include "silu_mul.cuh"

namespace loraserve {

using cuda::checkCuda;

namespace {

// Rows of one forward pass: longer steps run as consecutive parts (chunked prefill), which bounds the
// activation memory. 2048 rows keep every matrix product large enough to run at the GEMM rate.
constexpr int kTokenBudget = 2048;
// Decode steps up to this batch size are captured as CUDA graphs, one per size met.
constexpr int kMaxGraphRows = 256;
constexpr int kMaxDecodeSplits = 32;
// Device memory kept out of an automatically sized KV cache beyond the logit rows: CUDA graphs, cuBLAS, the
// driver's own growth.
constexpr size_t kHeadroomBytes = 512u << 20;
// A sized cache holds at most this many blocks: an 8B model fills 80 GB with ~35k, a tiny test model would get
// tens of millions that no batch could use.
constexpr int kMaxSizedKvBlocks = 1 << 20;
// Sized adapter slots, at most: S-LoRA's scale (thousands of adapters live in host memory and on disk; the slots
// hold the ones in use). A tiny test model would otherwise get millions.
constexpr int kMaxSizedSlots = 1024;

const ShardLayout& requireSupported(const ShardLayout& layout, const EngineOptions& options) {
  const ModelSpec& spec = options.spec;
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::runtime_error("device \"cuda\": " + message);
  };
  require(spec.headDim == 16 || spec.headDim == 32 || spec.headDim == 64 || spec.headDim == 128,
          "head_dim " + std::to_string(spec.headDim) + " is not supported (16, 32, 64 or 128)");
  require(spec.numHeads / spec.numKvHeads <= cuda::kMaxDecodeGroup,
          "more than " + std::to_string(cuda::kMaxDecodeGroup) + " query heads per kv head are not supported");
  require(spec.hiddenSize % 8 == 0 && layout.localIntermediate() % 8 == 0 &&
              (layout.localKvHeads() * spec.headDim) % 8 == 0,
          "hidden, intermediate and kv widths must be multiples of 8 (16-byte vector loads)");
  require(options.maxLoraRank <= 128, "maxLoraRank above 128 is not supported");
  return layout;
}

// Creates the CUDA context first, so that its own memory is not counted as the engine's.
size_t freeDeviceBytes() {
  checkCuda(cudaFree(nullptr), "cudaFree (context)");
  size_t free = 0, total = 0;
  checkCuda(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return free;
}

int deviceMultiprocessors() {
  int device = 0;
  checkCuda(cudaGetDevice(&device), "cudaGetDevice");
  int count = 0;
  checkCuda(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  return count;
}

// The GPU selection has no penalties or typical-p: such rows are answered by the CPU sampler (sampler.h, the
// spec) from their float32 logits, one row copy each, so they get exactly its answer.
bool selectsOnHost(const LogitRequest& request) {
  return request.select && (hasPenalties(request.sampling) || request.sampling.typicalP < 1.0);
}

// Sets the rank's GPU current before anything touches CUDA: GPU `rank` unless options.gpu names one.
int selectDevice(const EngineOptions& options) {
  const int device = options.gpu >= 0 ? options.gpu : options.rank;
  int count = 0;
  checkCuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device >= count) {
    throw std::runtime_error("device \"cuda\": GPU " + std::to_string(device) + " is not visible (" +
                             std::to_string(count) + " visible" +
                             (options.gpu >= 0 ? "" : "; rank " + std::to_string(options.rank) + " takes GPU " + std::to_string(options.rank)) +
                             "): check --gpu, --num-shard and CUDA_VISIBLE_DEVICES");
  }
  checkCuda(cudaSetDevice(device), "cudaSetDevice");
  return device;
}

}  // namespace

template <typename T>
CudaBackend<T>::CudaBackend(const EngineOptions& options)
    : device_(selectDevice(options)),
      spec_(options.spec),
      layout_(requireSupported(ShardLayout(options.spec, options.rank, options.world), options)),
      blockSize_(options.blockSize),
      qWidth_(static_cast<int>(layout_.localHeads() * spec_.headDim)),
      kvWidth_(static_cast<int>(layout_.localKvHeads() * spec_.headDim)),
      qkvWidth_(qWidth_ + 2 * kvWidth_),
      intermediate_(static_cast<int>(layout_.localIntermediate())),
      multiprocessors_(deviceMultiprocessors()),
      freeBeforeLoad_(freeDeviceBytes()),
      weights_(cuda::uploadModelWeights<T>(options, layout_)),
      adapters_(options.spec, layout_, options.maxLoras >= 0 ? options.maxLoras : slotsThatFit(options), options.maxLoraRank) {
  // Non-blocking: adapter loads copy on their own stream (adapter_slots.h) beside the steps, never in line.
  checkCuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  gemm_ = std::make_unique<cuda::Gemm>(stream_);
  if (options.world > 1 || options.tensorParallelPath) nccl_ = createCudaCommunicator(groupConfig(options), stream_);

  const std::vector<float> invFreq = ropeInverseFrequencies(spec_);
  ropeInvFreq_.resize(invFreq.size());
  checkCuda(cudaMemcpy(ropeInvFreq_.data(), invFreq.data(), ropeInvFreq_.bytes(), cudaMemcpyHostToDevice),
            "cudaMemcpy (rope frequencies)");

  for (int layer = 0; layer < spec_.numLayers; ++layer) {
    qkvGroups_.push_back(adapters_.group(layer, {LoraTarget::Q, LoraTarget::K, LoraTarget::V}));
    oGroups_.push_back(adapters_.group(layer, {LoraTarget::O}));
    gateUpGroups_.push_back(adapters_.group(layer, {LoraTarget::Gate, LoraTarget::Up}));
    downGroups_.push_back(adapters_.group(layer, {LoraTarget::Down}));
  }

  const size_t rows = kTokenBudget;
  residual_.resize(rows * spec_.hiddenSize);
  normed_.resize(rows * spec_.hiddenSize);
  qkv_.resize(rows * qkvWidth_);
  q_.resize(rows * qWidth_);
  attention_.resize(rows * qWidth_);
  gateUp_.resize(rows * 2 * intermediate_);
  activated_.resize(rows * intermediate_);
  loraV_.resize(rows * cuda::loraIntermediateStride(adapters_.maxRank()));
  const int heads = static_cast<int>(layout_.localHeads());
  int64_t scratchFloats = 0;
  for (int items = 1; items <= kTokenBudget; ++items) {
    const int splits = decodeSplits(items);
    if (splits > 1) {
      scratchFloats = std::max(scratchFloats,
                               cuda::decodeAttentionScratchFloats(items, heads, static_cast<int>(spec_.headDim), splits));
    }
  }
  splitScratch_.resize(static_cast<size_t>(scratchFloats));

  // Last: with numKvBlocks 0 the cache takes what the allocations above left of the engine's share.
  numKvBlocks_ = options.numKvBlocks > 0 ? options.numKvBlocks : kvBlocksThatFit(options.gpuMemoryFraction);
  kvCache_.resize(static_cast<size_t>(spec_.numLayers) * 2 * numKvBlocks_ * blockSize_ * kvWidth_);
  checkCuda(cudaDeviceSynchronize(), "CUDA backend start-up");
}

template <typename T>
typename CudaBackend<T>::MemoryRoom CudaBackend<T>::memoryRoom(double gpuMemoryFraction) const {
  size_t free = 0, total = 0;
  checkCuda(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  MemoryRoom memory;
  memory.free = static_cast<double>(free);
  memory.total = static_cast<double>(total);
  memory.held = static_cast<double>(freeBeforeLoad_) - memory.free;
  memory.room = std::min(gpuMemoryFraction * memory.total - memory.held, memory.free);
  return memory;
}

template <typename T>
int CudaBackend<T>::kvBlocksThatFit(double gpuMemoryFraction) const {
  // What this engine took since it started (weights, adapter slots, activations, workspaces) is held.
  const auto [room, held, free, total] = memoryRoom(gpuMemoryFraction);
  // Logit rows grow on demand (ensureLogitRows): keep room for one full part's, and for graphs and the like.
  // (On the tensor-parallel path each row also has its vocabulary columns and every rank's, gathered.)
  const double gatherFloats = nccl_ ? static_cast<double>(layout_.vocabPerRank()) * (layout_.world() + 1) : 0.0;
  const double logitRoom =
      static_cast<double>(kTokenBudget) * ((spec_.vocabSize + gatherFloats) * sizeof(float) + spec_.hiddenSize * 2);
  const double cacheRoom = room - logitRoom - static_cast<double>(kHeadroomBytes);
  const double blockBytes = static_cast<double>(spec_.numLayers) * 2 * blockSize_ * kvWidth_ * sizeof(T);
  // Cache rows are int32 block * blockSize + offset; and the shard keeps a list of the block ids.
  const double blocks = std::min({std::floor(cacheRoom / blockBytes), static_cast<double>(kMaxSizedKvBlocks),
                                  static_cast<double>(std::numeric_limits<int32_t>::max() / blockSize_)});
  if (blocks < 1) {
    const double gib = 1024.0 * 1024.0 * 1024.0;
    char message[256];
    std::snprintf(message, sizeof message,
                  "device \"cuda\": no room for the KV cache in gpuMemoryFraction %.3g of %.1f GiB: the engine "
                  "holds %.1f GiB and %.1f GiB are free",
                  gpuMemoryFraction, total / gib, held / gib, free / gib);
    throw std::runtime_error(message);
  }
  return static_cast<int>(blocks);
}

template <typename T>
int CudaBackend<T>::slotsThatFit(const EngineOptions& options) const {
  // Called once the weights are on the device: the room is what the engine's share leaves after them.
  const double room = memoryRoom(options.gpuMemoryFraction).room;
  const double slotBytes = static_cast<double>(cuda::AdapterSlots<T>::slotBytes(spec_, layout_, options.maxLoraRank));
  const double slots = std::floor(options.adapterMemoryFraction * room / slotBytes);
  if (slots < 1) {
    const double gib = 1024.0 * 1024.0 * 1024.0;
    char message[320];
    std::snprintf(message, sizeof message,
                  "device \"cuda\": no room for one adapter slot (%.2f GiB at max LoRA rank %d) in adapterMemoryFraction "
                  "%.3g of the %.1f GiB left after the weights: lower the max LoRA rank or set the slot count",
                  slotBytes / gib, options.maxLoraRank, options.adapterMemoryFraction, std::max(room, 0.0) / gib);
    throw std::runtime_error(message);
  }
  return static_cast<int>(std::min(slots, static_cast<double>(kMaxSizedSlots)));
}

template <typename T>
CudaBackend<T>::~CudaBackend() {
  cudaSetDevice(device_);
  dropGraphs();
  nccl_.reset();  // it works on stream_
  if (stream_) cudaStreamDestroy(stream_);
}

template <typename T>
void CudaBackend<T>::useDevice() const {
  checkCuda(cudaSetDevice(device_), "cudaSetDevice");
}

template <typename T>
void CudaBackend<T>::loadAdapter(int slot, const CheckedAdapter& adapter) {
  useDevice();
  adapters_.load(slot, adapter);
}

template <typename T>
void CudaBackend<T>::unloadAdapter(int slot) {
  useDevice();
  adapters_.unload(slot);
}

template <typename T>
int CudaBackend<T>::decodeSplits(int items) const {
  // Enough blocks for two waves over the multiprocessors; long contexts then read in parallel.
  const int blocks = items * static_cast<int>(layout_.localKvHeads());
  return std::clamp((2 * multiprocessors_ + blocks - 1) / blocks, 1, kMaxDecodeSplits);
}

template <typename T>
cuda::PagedKv<T> CudaBackend<T>::pagedKv(int layer, const int32_t* blockTables) const {
  const size_t perCache = static_cast<size_t>(numKvBlocks_) * blockSize_ * kvWidth_;
  cuda::PagedKv<T> kv;
  kv.k = kvCache_.data() + (2 * static_cast<size_t>(layer)) * perCache;
  kv.v = kv.k + perCache;
  kv.blockTables = blockTables;
  kv.blockSize = blockSize_;
  kv.numHeads = static_cast<int>(layout_.localHeads());
  kv.numKvHeads = static_cast<int>(layout_.localKvHeads());
  kv.headDim = static_cast<int>(spec_.headDim);
  return kv;
}

template <typename T>
void CudaBackend<T>::dropGraphs() {
  for (auto& [key, graph] : graphs_) cudaGraphExecDestroy(graph);
  graphs_.clear();
}

template <typename T>
void CudaBackend<T>::ensureLogitRows(int rows) {
  if (rows <= logitCapacity_) return;
  // Captured graphs hold the old addresses.
  dropGraphs();
  const size_t capacity = std::max<size_t>(static_cast<size_t>(rows), 2 * static_cast<size_t>(logitCapacity_));
  logits_.resize(capacity * spec_.vocabSize);
  if (nccl_) {
    localLogits_.resize(capacity * layout_.vocabPerRank());
    gatheredLogits_.resize(capacity * layout_.vocabPerRank() * layout_.world());
  }
  logitInputs_.resize(capacity * spec_.hiddenSize);
  requests_.resize(capacity);
  results_.resize(capacity);
  requestsHost_.resize(capacity);
  resultsHost_.resize(capacity);
  logitCapacity_ = static_cast<int>(capacity);
}

template <typename T>
typename CudaBackend<T>::DeviceStep CudaBackend<T>::upload(const cuda::StepPlan& plan, bool padLoraTiles) {
  std::vector<cuda::LoraTile> tiles = plan.loraTiles;
  // A graph is captured with one tile per row; rows without an adapter are tiles of slot -1 that exit at once.
  if (padLoraTiles && !tiles.empty()) tiles.resize(static_cast<size_t>(plan.rows), cuda::LoraTile{0, 1, -1});

  // One copy for the whole step. Regions follow each other in a fixed order, so two steps with the same counts
  // get the same addresses (what replaying a graph needs); the block tables, the only variable-length part of a
  // decode step, come last.
  size_t used = 0;
  auto region = [&used](size_t bytes) {
    const size_t at = used;
    used += (bytes + 15) / 16 * 16;
    return at;
  };
  const size_t tokensAt = region(plan.tokens.size() * sizeof(int32_t));
  const size_t positionsAt = region(plan.positions.size() * sizeof(int32_t));
  const size_t slotsAt = region(plan.cacheSlots.size() * sizeof(int32_t));
  const size_t logitRowsAt = region(plan.logitRows.size() * sizeof(int32_t));
  const size_t tilesAt = region(tiles.size() * sizeof(cuda::LoraTile));
  const size_t decodeAt = region(plan.decodeItems.size() * sizeof(cuda::DecodeItem));
  const size_t prefillAt = region(plan.prefillTiles.size() * sizeof(cuda::PrefillTile));
  const size_t tablesAt = region(plan.blockTables.size() * sizeof(int32_t));

  // The previous part's copy may still read the host staging area.
  checkCuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (step staging)");
  if (stagingDevice_.size() < used) {
    dropGraphs();
    stagingDevice_.resize(used * 2);
    stagingHost_.resize(used * 2);
  }
  unsigned char* host = stagingHost_.data();
  auto put = [host](size_t at, const auto& values) {
    if (!values.empty()) std::memcpy(host + at, values.data(), values.size() * sizeof(values[0]));
  };
  put(tokensAt, plan.tokens);
  put(positionsAt, plan.positions);
  put(slotsAt, plan.cacheSlots);
  put(logitRowsAt, plan.logitRows);
  put(tilesAt, tiles);
  put(decodeAt, plan.decodeItems);
  put(prefillAt, plan.prefillTiles);
  put(tablesAt, plan.blockTables);
  checkCuda(cudaMemcpyAsync(stagingDevice_.data(), host, used, cudaMemcpyHostToDevice, stream_),
            "cudaMemcpyAsync (step descriptors)");

  const unsigned char* device = stagingDevice_.data();
  DeviceStep step;
  step.rows = plan.rows;
  step.logitRows = static_cast<int>(plan.logitRows.size());
  step.loraTiles = static_cast<int>(tiles.size());
  for (const cuda::LoraTile& tile : tiles) step.maxLoraTileRows = std::max(step.maxLoraTileRows, tile.numRows);
  step.lora = !tiles.empty();
  step.decodeItems = static_cast<int>(plan.decodeItems.size());
  step.prefillTiles = static_cast<int>(plan.prefillTiles.size());
  step.tokens = reinterpret_cast<const int32_t*>(device + tokensAt);
  step.positions = reinterpret_cast<const int32_t*>(device + positionsAt);
  step.cacheSlots = reinterpret_cast<const int32_t*>(device + slotsAt);
  step.logitRowIndex = reinterpret_cast<const int32_t*>(device + logitRowsAt);
  step.loraTileList = reinterpret_cast<const cuda::LoraTile*>(device + tilesAt);
  step.decodeItemList = reinterpret_cast<const cuda::DecodeItem*>(device + decodeAt);
  step.prefillTileList = reinterpret_cast<const cuda::PrefillTile*>(device + prefillAt);
  step.blockTables = reinterpret_cast<const int32_t*>(device + tablesAt);
  return step;
}

template <typename T>
void CudaBackend<T>::enqueueForward(const DeviceStep& step, float* logits) {
  const int hidden = static_cast<int>(spec_.hiddenSize);
  const float eps = static_cast<float>(spec_.rmsNormEps);
  const cuda::LoraSlots<T> slots = adapters_.view();
  const cuda::RopeKvShape ropeShape{static_cast<int>(layout_.localHeads()), static_cast<int>(layout_.localKvHeads()),
                                    static_cast<int>(spec_.headDim)};
  const int splits = decodeSplits(std::max(step.decodeItems, 1));
  auto lora = [&](const T* x, const cuda::LoraGroup& group, float* y, int yStride) {
    if (!step.lora) return;
    cuda::loraShrink(x, step.loraTileList, step.loraTiles, step.maxLoraTileRows, slots, group, loraV_.data(), stream_);
    cuda::loraExpand(loraV_.data(), step.loraTileList, step.loraTiles, step.maxLoraTileRows, slots, group, y, yStride,
                     stream_);
  };

  // o_proj and down_proj (and their LoRA terms) add this rank's partial sums into the residual stream. Rank 0
  // adds them to the residual, the others write theirs alone, so that one in-place all-reduce of the residual
  // gives every rank the whole new residual.
  const float residualBeta = layout_.rank() == 0 ? 1.0f : 0.0f;
  auto reduceResidual = [&] {
    if (nccl_) nccl_->allReduceSum(residual_.data(), static_cast<size_t>(step.rows) * hidden);
  };
  const IndexRange vocab = layout_.vocabRows();
  cuda::embedRows(weights_.embedTokens.data(), static_cast<int>(vocab.begin), static_cast<int>(vocab.size()),
                  step.tokens, step.rows, hidden, residual_.data(), stream_);
  reduceResidual();  // each row's embedding lives on the rank whose vocabulary slice holds its token
  for (int l = 0; l < spec_.numLayers; ++l) {
    const cuda::DeviceLayerWeights<T>& w = weights_.layers[static_cast<size_t>(l)];
    const cuda::PagedKv<T> kv = pagedKv(l, step.blockTables);

    cuda::rmsNorm(residual_.data(), nullptr, w.inputNorm.data(), normed_.data(), step.rows, hidden, eps, stream_);
    gemm_->linear(normed_.data(), step.rows, hidden, w.qkv.data(), qkvWidth_, qkv_.data(), qkvWidth_, 0.0f);
    lora(normed_.data(), qkvGroups_[static_cast<size_t>(l)], qkv_.data(), qkvWidth_);
    cuda::ropeAndWriteKv(qkv_.data(), step.positions, step.cacheSlots, ropeInvFreq_.data(), q_.data(),
                         const_cast<T*>(kv.k), const_cast<T*>(kv.v), step.rows, ropeShape,
                         stream_);
    cuda::decodeAttention(q_.data(), kv, step.decodeItemList, step.decodeItems, splits, splitScratch_.data(),
                          attention_.data(), stream_);
    cuda::prefillAttention(q_.data(), kv, step.prefillTileList, step.prefillTiles, attention_.data(), stream_);
    gemm_->linear(attention_.data(), step.rows, qWidth_, w.o.data(), hidden, residual_.data(), hidden, residualBeta);
    lora(attention_.data(), oGroups_[static_cast<size_t>(l)], residual_.data(), hidden);
    reduceResidual();

    cuda::rmsNorm(residual_.data(), nullptr, w.postAttentionNorm.data(), normed_.data(), step.rows, hidden, eps,
                  stream_);
    gemm_->linear(normed_.data(), step.rows, hidden, w.gateUp.data(), 2 * intermediate_, gateUp_.data(),
                  2 * intermediate_, 0.0f);
    lora(normed_.data(), gateUpGroups_[static_cast<size_t>(l)], gateUp_.data(), 2 * intermediate_);
    cuda::siluAndMul(gateUp_.data(), activated_.data(), step.rows, intermediate_, stream_);
    gemm_->linear(activated_.data(), step.rows, intermediate_, w.down.data(), hidden, residual_.data(), hidden,
                  residualBeta);
    lora(activated_.data(), downGroups_[static_cast<size_t>(l)], residual_.data(), hidden);
    reduceResidual();
  }
  // Only the rows that need logits go through the final norm and the output projection.
  cuda::rmsNorm(residual_.data(), step.logitRowIndex, weights_.finalNorm.data(), logitInputs_.data(), step.logitRows,
                hidden, eps, stream_);
  if (!nccl_) {
    gemm_->linear(logitInputs_.data(), step.logitRows, hidden, weights_.outputProjection(),
                  static_cast<int>(spec_.vocabSize), logits, static_cast<int>(spec_.vocabSize), 0.0f);
    return;
  }
  // This rank's vocabulary columns, vocabPerRank wide (the last rank's slice is shorter: its padding is never
  // read), gathered from every rank and laid out as whole rows, so token selection sees what one rank would.
  const int width = static_cast<int>(layout_.vocabPerRank());
  gemm_->linear(logitInputs_.data(), step.logitRows, hidden, weights_.outputProjection(), static_cast<int>(vocab.size()),
                localLogits_.data(), width, 0.0f);
  const size_t part = static_cast<size_t>(step.logitRows) * width;
  const int64_t vocabSize = spec_.vocabSize;
  // One row whose slices fill it exactly is already laid out whole once gathered: no copy (decode at batch 1).
  if (step.logitRows == 1 && static_cast<int64_t>(width) * layout_.world() == vocabSize) {
    nccl_->allGather(localLogits_.data(), part, logits);
    return;
  }
  nccl_->allGather(localLogits_.data(), part, gatheredLogits_.data());
  for (int rank = 0; rank < layout_.world(); ++rank) {
    const int64_t first = static_cast<int64_t>(rank) * width;
    const int64_t columns = std::max<int64_t>(0, std::min<int64_t>(width, vocabSize - first));
    if (columns == 0 || step.logitRows == 0) continue;
    checkCuda(cudaMemcpy2DAsync(logits + first, vocabSize * sizeof(float), gatheredLogits_.data() + rank * part,
                                width * sizeof(float), columns * sizeof(float), step.logitRows, cudaMemcpyDeviceToDevice,
                                stream_),
              "cudaMemcpy2DAsync (gathered logits)");
  }
}

template <typename T>
void CudaBackend<T>::enqueueSelect(int rows) {
  cuda::selectTokens(logits_.data(), rows, static_cast<int>(spec_.vocabSize), requests_.data(), results_.data(),
                     stream_);
}

template <typename T>
void CudaBackend<T>::runGraph(const GraphKey& key, const DeviceStep& step) {
  auto found = graphs_.find(key);
  if (found == graphs_.end()) {
    cudaGraph_t graph = nullptr;
    checkCuda(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
      enqueueForward(step, logits_.data());
      enqueueSelect(step.logitRows);
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    checkCuda(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    checkCuda(status, "cudaGraphInstantiate");
    found = graphs_.emplace(key, exec).first;
  }
  checkCuda(cudaGraphLaunch(found->second, stream_), "cudaGraphLaunch");
}

template <typename T>
void CudaBackend<T>::run(const ForwardBatch& batch) {
  const int64_t vocab = spec_.vocabSize;
  const int totalLogits = static_cast<int>(batch.logitRequests.size());
  ensureLogitRows(std::max(totalLogits, 1));
  for (int i = 0; i < totalLogits; ++i) {
    const LogitRequest& from = batch.logitRequests[static_cast<size_t>(i)];
    cuda::TokenRequest& request = requestsHost_.data()[i];
    request = cuda::TokenRequest{};
    // The host answers this row whole from its logits (forward()); the GPU selection skips it.
    if (selectsOnHost(from)) continue;
    if (from.topN > cuda::kMaxTopN) {
      throw std::invalid_argument("topN " + std::to_string(from.topN) + " is above the CUDA backend's limit of " +
                                  std::to_string(cuda::kMaxTopN));
    }
    request.draw = from.select;
    if (from.select) {
      request.temperature = from.sampling.temperature;
      request.topK = from.sampling.topK;
      request.topP = from.sampling.topP;
      request.uniform = uniformDraw(from.sampling.seed, from.sampling.draw);
      request.topN = static_cast<int>(std::min<int64_t>(from.topN, vocab));
    }
    request.target = from.target;
  }
  if (totalLogits > 0) {
    checkCuda(cudaMemcpyAsync(requests_.data(), requestsHost_.data(), totalLogits * sizeof(cuda::TokenRequest),
                              cudaMemcpyHostToDevice, stream_),
              "cudaMemcpyAsync (token requests)");
  }
  const std::vector<ForwardBatch> parts = cuda::splitByTokenBudget(batch, kTokenBudget);
  if (parts.size() == 1) {
    const cuda::StepPlan plan = cuda::planStep(parts[0], blockSize_);
    if (plan.isPureDecode() && totalLogits == plan.rows && plan.rows <= kMaxGraphRows) {
      const DeviceStep step = upload(plan, true);
      runGraph(GraphKey{plan.rows, step.lora}, step);
      return;
    }
  }
  int logitOffset = 0;
  for (const ForwardBatch& part : parts) {
    const DeviceStep step = upload(cuda::planStep(part, blockSize_), false);
    enqueueForward(step, logits_.data() + static_cast<size_t>(logitOffset) * vocab);
    logitOffset += step.logitRows;
  }
  enqueueSelect(totalLogits);
}

template <typename T>
std::vector<LogitResult> CudaBackend<T>::forward(const ForwardBatch& batch) {
  useDevice();
  const int64_t vocab = spec_.vocabSize;
  run(batch);
  const size_t count = batch.logitRequests.size();
  checkCuda(cudaMemcpyAsync(resultsHost_.data(), results_.data(), count * sizeof(cuda::TokenResult),
                            cudaMemcpyDeviceToHost, stream_),
            "cudaMemcpyAsync (token results)");
  // Raw logits cross to the host only for the rows that asked for them (tests and diagnostics) and for the rows
  // the host sampler answers.
  std::vector<std::vector<float>> hostLogits(count);
  for (size_t i = 0; i < count; ++i) {
    const LogitRequest& request = batch.logitRequests[i];
    if (!request.returnLogits && !selectsOnHost(request)) continue;
    hostLogits[i].resize(static_cast<size_t>(vocab));
    checkCuda(cudaMemcpyAsync(hostLogits[i].data(), logits_.data() + i * vocab, vocab * sizeof(float),
                              cudaMemcpyDeviceToHost, stream_),
              "cudaMemcpyAsync (logits to the host)");
  }
  checkCuda(cudaStreamSynchronize(stream_), "step");
  std::vector<LogitResult> answers(count);
  for (size_t i = 0; i < count; ++i) {
    const LogitRequest& request = batch.logitRequests[i];
    LogitResult& answer = answers[i];
    if (selectsOnHost(request)) {
      answer = evaluateLogits(hostLogits[i].data(), vocab, request);
      continue;
    }
    const cuda::TokenResult& selected = resultsHost_.data()[i];
    if (request.target >= 0) answer.targetLogprob = selected.targetLogprob;
    if (request.select) {
      answer.token = selected.token;
      answer.tokenLogprob = selected.tokenLogprob;
      answer.topIds.assign(selected.topIds, selected.topIds + selected.numTop);
      answer.topLogprobs.assign(selected.topLogprobs, selected.topLogprobs + selected.numTop);
    }
    if (request.returnLogits) answer.logits = std::move(hostLogits[i]);
  }
  return answers;
}

template class CudaBackend<__half>;
template class CudaBackend<__nv_bfloat16>;

std::unique_ptr<Backend> createCudaBackend(const EngineOptions& options) {
  switch (options.dtype) {
    case DeviceDtype::Float16: return std::make_unique<CudaBackend<__half>>(options);
    case DeviceDtype::Bfloat16: return std::make_unique<CudaBackend<__nv_bfloat16>>(options);
  }
  throw std::logic_error("unknown dtype");
}

}  // namespace loraserve

#include "cpu_backend.h"

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "../comm/create_communicator.h"
#include "../rope_frequencies.h"
#include "../sampler.h"
#include "decoder_layer.h"
#include "gemm.h"
#include "lora.h"
#include "rms_norm.h"

namespace loraserve {

namespace {

int resolveThreads(int requested) {
  if (requested > 0) return requested;
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

CpuBackend::CpuBackend(const EngineOptions& options)
    : spec_(options.spec),
      layout_(options.spec, options.rank, options.world),
      communicator_(std::make_unique<TimedCommunicator>(createCpuCommunicator(groupConfig(options)))),
      attention_{layout_.localHeads(), layout_.localKvHeads(), options.spec.headDim},
      weights_(loadHostWeights(options, layout_)),
      weightBytes_(weights_.bytes()),
      ropeInvFreq_(ropeInverseFrequencies(options.spec)),
      cache_(options.spec.numLayers, options.numKvBlocks, options.blockSize, layout_.localKvHeads(),
             options.spec.headDim),
      pool_(resolveThreads(options.threads)),
      adapters_(static_cast<size_t>(options.maxLoras)) {
  setGemmThreads(resolveThreads(options.threads));
}

void CpuBackend::loadAdapter(int slot, const CheckedAdapter& adapter) {
  auto shared = std::make_shared<const HostAdapter>(readHostAdapter(adapter));
  std::lock_guard<std::mutex> lock(adaptersMutex_);
  adapters_[static_cast<size_t>(slot)] = std::move(shared);
}

void CpuBackend::unloadAdapter(int slot) {
  std::lock_guard<std::mutex> lock(adaptersMutex_);
  adapters_[static_cast<size_t>(slot)].reset();
}

std::vector<LogitResult> CpuBackend::forward(const ForwardBatch& batch) {
  const int64_t rows = static_cast<int64_t>(batch.tokens.size());
  const int64_t hidden = spec_.hiddenSize;
  std::vector<LoraGroup> lora;
  {
    std::lock_guard<std::mutex> lock(adaptersMutex_);
    lora = groupRowsByAdapter(batch, adapters_);
  }

  // This rank's vocabulary rows of the embedding; the others are zero here and come from their ranks in the sum.
  const IndexRange vocab = layout_.vocabRows();
  std::vector<float> x(static_cast<size_t>(rows * hidden), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t token = batch.tokens[static_cast<size_t>(r)];
    if (token < vocab.begin || token >= vocab.end) continue;
    const float* embedding = weights_.embedTokens.data.data() + (token - vocab.begin) * hidden;
    std::copy_n(embedding, hidden, x.begin() + r * hidden);
  }
  communicator_->allReduceSum(x.data(), x.size());

  const LayerContext context{batch,  lora,   spec_, attention_, layout_.localIntermediate(), ropeInvFreq_,
                             cache_, pool_, *communicator_};
  LayerScratch scratch(rows, spec_, attention_, layout_.localIntermediate());
  for (int layer = 0; layer < spec_.numLayers; ++layer) {
    decoderLayerForward(context, layer, weights_.layers[static_cast<size_t>(layer)], x.data(), scratch);
  }

  // Only the rows that need logits go through the final norm and the output projection.
  const std::vector<LogitRequest>& requests = batch.logitRequests;
  const int64_t outputs = static_cast<int64_t>(requests.size());
  std::vector<float> normed(static_cast<size_t>(outputs * hidden));
  for (int64_t i = 0; i < outputs; ++i) {
    rmsNorm(x.data() + requests[static_cast<size_t>(i)].row * hidden, 1, hidden, weights_.finalNorm.data(),
            static_cast<float>(spec_.rmsNormEps), normed.data() + i * hidden);
  }
  const HostMatrix& head = weights_.outputProjection();
  std::vector<float> local(static_cast<size_t>(outputs * head.rows));
  linear(normed.data(), outputs, hidden, head.data.data(), head.rows, local.data());
  const std::vector<float> logits = wholeLogitRows(std::move(local), outputs);
  if (communicator_->rank() != 0) return {};
  const int64_t vocabSize = spec_.vocabSize;

  std::vector<LogitResult> results(static_cast<size_t>(outputs));
  pool_.parallelFor(outputs, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      results[static_cast<size_t>(i)] =
          evaluateLogits(logits.data() + i * vocabSize, vocabSize, requests[static_cast<size_t>(i)]);
    }
  });
  return results;
}

std::vector<float> CpuBackend::wholeLogitRows(std::vector<float> local, int64_t rows) const {
  if (communicator_->world() == 1 || rows == 0) return local;
  // Every rank contributes vocabPerRank columns a row (the last rank pads its shorter slice), so one gather of
  // equal parts holds every logit; token selection then sees exactly the rows one rank would have computed.
  const int64_t width = layout_.vocabPerRank();
  const int64_t localWidth = layout_.vocabRows().size();
  std::vector<float> padded(static_cast<size_t>(rows * width), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(local.begin() + r * localWidth, localWidth, padded.begin() + r * width);
  }
  const int world = communicator_->world();
  std::vector<float> gathered(padded.size() * static_cast<size_t>(world));
  communicator_->allGather(padded.data(), padded.size(), gathered.data());
  const int64_t vocabSize = spec_.vocabSize;
  std::vector<float> whole(static_cast<size_t>(rows * vocabSize));
  for (int rank = 0; rank < world; ++rank) {
    const int64_t begin = rank * width;
    const int64_t columns = std::max<int64_t>(0, std::min(width, vocabSize - begin));
    const float* part = gathered.data() + static_cast<size_t>(rank) * padded.size();
    for (int64_t r = 0; r < rows; ++r) std::copy_n(part + r * width, columns, whole.begin() + r * vocabSize + begin);
  }
  return whole;
}

}  // namespace loraserve

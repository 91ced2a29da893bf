#include "cpu_backend.h"

#include <algorithm>
#include <stdexcept>
#include <thread>

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

  std::vector<float> x(static_cast<size_t>(rows * hidden));
  for (int64_t r = 0; r < rows; ++r) {
    const float* embedding = weights_.embedTokens.data.data() + batch.tokens[static_cast<size_t>(r)] * hidden;
    std::copy_n(embedding, hidden, x.begin() + r * hidden);
  }

  const LayerContext context{batch, lora, spec_, attention_, layout_.localIntermediate(), ropeInvFreq_, cache_, pool_};
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
  std::vector<float> logits(static_cast<size_t>(outputs * head.rows));
  linear(normed.data(), outputs, hidden, head.data.data(), head.rows, logits.data());

  std::vector<LogitResult> results(static_cast<size_t>(outputs));
  pool_.parallelFor(outputs, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      results[static_cast<size_t>(i)] =
          evaluateLogits(logits.data() + i * head.rows, head.rows, requests[static_cast<size_t>(i)]);
    }
  });
  return results;
}

}  // namespace loraserve

// One Llama decoder layer over a whole batch on the CPU:
//   x += o_proj(attention(rope(q/k/v_proj(rmsnorm(x)))))
//   x += down_proj(silu(gate_proj(h)) * up_proj(h)),  h = rmsnorm(x)
// every projection with its LoRA update for the rows whose adapter targets it.
#pragma once

#include <cstdint>
#include <vector>

#include "../comm/communicator.h"
#include "../forward_batch.h"
#include "../host_weights.h"
#include "../model_spec.h"
#include "kv_cache.h"
#include "lora.h"
#include "paged_attention.h"
#include "thread_pool.h"

namespace loraserve {

// What every layer of one forward pass shares.
struct LayerContext {
  const ForwardBatch& batch;
  const std::vector<LoraGroup>& lora;
  const ModelSpec& spec;
  const AttentionShape& attention;
  int64_t localIntermediate;
  const std::vector<float>& ropeInvFreq;
  KvCache& cache;
  ThreadPool& pool;
  // Sums the row-parallel projections' partial outputs over the group (a no-op for one rank).
  Communicator& communicator;
};

// Activations of one forward pass, sized for its rows once and reused by every layer.
struct LayerScratch {
  LayerScratch(int64_t rows, const ModelSpec& spec, const AttentionShape& attention, int64_t localIntermediate);
  std::vector<float> normed, q, k, v, attended, projected, gate, up;
};

// x is [rows, hidden], updated in place.
void decoderLayerForward(const LayerContext& context, int layer, const HostLayerWeights& weights, float* x,
                         LayerScratch& scratch);

}  // namespace loraserve

#include "decoder_layer.h"

#include "gemm.h"
#include "rms_norm.h"
#include "rope.h"
#include "swiglu.h"

namespace loraserve {

namespace {

// y = x · Wᵀ (this rank's slice) plus the LoRA update of the rows whose adapter targets this projection.
void project(const LayerContext& context, int layer, const HostLayerWeights& weights, LoraTarget target,
             const float* x, float* y) {
  const HostMatrix& w = weights.projection(target);
  const int64_t rows = static_cast<int64_t>(context.batch.tokens.size());
  linear(x, rows, w.cols, w.data.data(), w.rows, y);
  addLoraDelta(context.lora, layer, target, x, w.cols, y, w.rows);
}

void addInto(float* x, const std::vector<float>& delta) {
  for (size_t i = 0; i < delta.size(); ++i) x[i] += delta[i];
}

}  // namespace

LayerScratch::LayerScratch(int64_t rows, const ModelSpec& spec, const AttentionShape& attention,
                           int64_t localIntermediate)
    : normed(static_cast<size_t>(rows * spec.hiddenSize)),
      q(static_cast<size_t>(rows * attention.heads * attention.headDim)),
      k(static_cast<size_t>(rows * attention.kvHeads * attention.headDim)),
      v(k.size()),
      attended(q.size()),
      projected(normed.size()),
      gate(static_cast<size_t>(rows * localIntermediate)),
      up(gate.size()) {}

void decoderLayerForward(const LayerContext& context, int layer, const HostLayerWeights& weights, float* x,
                         LayerScratch& scratch) {
  const ForwardBatch& batch = context.batch;
  const int64_t rows = static_cast<int64_t>(batch.tokens.size());
  const int64_t hidden = context.spec.hiddenSize;
  const float eps = static_cast<float>(context.spec.rmsNormEps);
  const AttentionShape& shape = context.attention;

  rmsNorm(x, rows, hidden, weights.inputNorm.data(), eps, scratch.normed.data());
  project(context, layer, weights, LoraTarget::Q, scratch.normed.data(), scratch.q.data());
  project(context, layer, weights, LoraTarget::K, scratch.normed.data(), scratch.k.data());
  project(context, layer, weights, LoraTarget::V, scratch.normed.data(), scratch.v.data());
  applyRope(scratch.q.data(), rows, shape.heads, shape.headDim, batch.positions.data(), context.ropeInvFreq);
  applyRope(scratch.k.data(), rows, shape.kvHeads, shape.headDim, batch.positions.data(), context.ropeInvFreq);
  context.cache.write(layer, batch, scratch.k.data(), scratch.v.data());
  pagedAttention(batch, layer, scratch.q.data(), context.cache, shape, context.pool, scratch.attended.data());
  project(context, layer, weights, LoraTarget::O, scratch.attended.data(), scratch.projected.data());
  // o_proj and down_proj (and their LoRA terms) hold this rank's share of the input: partial sums, added up over
  // the group before they join the residual stream, which every rank keeps whole.
  context.communicator.allReduceSum(scratch.projected.data(), scratch.projected.size());
  addInto(x, scratch.projected);

  rmsNorm(x, rows, hidden, weights.postAttentionNorm.data(), eps, scratch.normed.data());
  project(context, layer, weights, LoraTarget::Gate, scratch.normed.data(), scratch.gate.data());
  project(context, layer, weights, LoraTarget::Up, scratch.normed.data(), scratch.up.data());
  siluMultiply(scratch.gate.data(), scratch.up.data(), rows * context.localIntermediate);
  project(context, layer, weights, LoraTarget::Down, scratch.gate.data(), scratch.projected.data());
  context.communicator.allReduceSum(scratch.projected.data(), scratch.projected.size());
  addInto(x, scratch.projected);
}

}  // namespace loraserve

#include "host_weights.h"

#include <stdexcept>
#include <string>

namespace loraserve {

namespace {

std::vector<float> readVector(MappedFiles& files, const TensorRef& ref, int64_t length, const std::string& what) {
  const MappedFile& file = files.get(ref.file);
  checkTensorRef(file, ref, {length}, what);
  return readFloat32(file, ref, {0, 1}, {0, length});
}

// This rank's vocabulary rows of a [vocab, hidden] table (the embedding or the output projection).
HostMatrix readVocabRows(MappedFiles& files, const TensorRef& ref, const ModelSpec& spec, const ShardLayout& layout,
                         const std::string& what) {
  const MappedFile& file = files.get(ref.file);
  checkTensorRef(file, ref, {spec.vocabSize, spec.hiddenSize}, what);
  return readMatrix(file, ref, layout.vocabRows(), {0, spec.hiddenSize});
}

HostMatrix readProjection(MappedFiles& files, const TensorRef& ref, const ModelSpec& spec, const ShardLayout& layout,
                          LoraTarget target, int layer) {
  const MappedFile& file = files.get(ref.file);
  const TargetShape full = fullTargetShape(spec, target);
  checkTensorRef(file, ref, {full.out, full.in}, "layer " + std::to_string(layer) + " " + loraTargetName(target));
  return readMatrix(file, ref, layout.outputRows(target), layout.inputColumns(target));
}

}  // namespace

size_t HostModelWeights::bytes() const {
  size_t total = embedTokens.bytes() + (lmHead ? lmHead->bytes() : 0) + finalNorm.size() * sizeof(float);
  for (const HostLayerWeights& layer : layers) {
    total += (layer.inputNorm.size() + layer.postAttentionNorm.size()) * sizeof(float);
    for (const HostMatrix& projection : layer.projections) total += projection.bytes();
  }
  return total;
}

HostModelWeights loadHostWeights(const EngineOptions& options, const ShardLayout& layout) {
  const ModelSpec& spec = options.spec;
  const BaseWeightRefs& refs = options.weights;
  if (static_cast<int>(refs.layers.size()) != spec.numLayers) {
    throw std::runtime_error("weights: " + std::to_string(refs.layers.size()) + " layers given, the spec has " +
                             std::to_string(spec.numLayers));
  }
  MappedFiles files;
  HostModelWeights weights;
  // The embedding and the output projection are split by vocabulary rows; the norms are replicated.
  weights.embedTokens = readVocabRows(files, refs.embedTokens, spec, layout, "embed_tokens");
  if (refs.lmHead) weights.lmHead = readVocabRows(files, *refs.lmHead, spec, layout, "lm_head");
  weights.finalNorm = readVector(files, refs.finalNorm, spec.hiddenSize, "norm");
  weights.layers.resize(refs.layers.size());
  for (int i = 0; i < spec.numLayers; ++i) {
    const LayerWeightRefs& layerRefs = refs.layers[i];
    HostLayerWeights& layer = weights.layers[i];
    const std::string prefix = "layer " + std::to_string(i) + " ";
    layer.inputNorm = readVector(files, layerRefs.inputNorm, spec.hiddenSize, prefix + "input_layernorm");
    layer.postAttentionNorm =
        readVector(files, layerRefs.postAttentionNorm, spec.hiddenSize, prefix + "post_attention_layernorm");
    const TensorRef* projectionRefs[kNumLoraTargets] = {&layerRefs.q,    &layerRefs.k,  &layerRefs.v,   &layerRefs.o,
                                                        &layerRefs.gate, &layerRefs.up, &layerRefs.down};
    for (int t = 0; t < kNumLoraTargets; ++t) {
      layer.projections[t] = readProjection(files, *projectionRefs[t], spec, layout, static_cast<LoraTarget>(t), i);
    }
  }
  return weights;
}

}  // namespace loraserve

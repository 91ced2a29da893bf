#include <string>

#include "../safetensors_view.h"
#include "convert_to_bf16.cuh"
#include "cuda_check.h"
#include "device_weights.h"

namespace loraserve::cuda {

namespace {

// Copies rows x cols of a checked 2-D tensor (a 1-D tensor is one row) into dst as bf16.
class Uploader {
 public:
  void copy(const MappedFile& file, const TensorRef& ref, IndexRange rows, IndexRange cols, __nv_bfloat16* dst) {
    const int64_t totalCols = ref.shape.empty() ? 1 : ref.shape.back();
    const size_t elementSize = dtypeSize(ref.dtype);
    const uint8_t* src = file.data() + ref.offset + (rows.begin * totalCols + cols.begin) * elementSize;
    const size_t widthBytes = static_cast<size_t>(cols.size()) * elementSize;
    const size_t pitch = static_cast<size_t>(totalCols) * elementSize;
    if (ref.dtype == DType::BF16) {
      checkCuda(cudaMemcpy2D(dst, widthBytes, src, pitch, widthBytes, rows.size(), cudaMemcpyHostToDevice),
                "cudaMemcpy2D (weights)");
      return;
    }
    const size_t bytes = widthBytes * rows.size();
    if (staging_.size() < bytes) staging_.resize(bytes);
    checkCuda(cudaMemcpy2D(staging_.data(), widthBytes, src, pitch, widthBytes, rows.size(), cudaMemcpyHostToDevice),
              "cudaMemcpy2D (weights)");
    convertToBf16(staging_.data(), ref.dtype, rows.size() * cols.size(), dst, nullptr);
    checkCuda(cudaDeviceSynchronize(), "converting weights to bf16");
  }

 private:
  DeviceBuffer<uint8_t> staging_;
};

DeviceBuffer<__nv_bfloat16> uploadVector(MappedFiles& files, Uploader& uploader, const TensorRef& ref,
                                         int64_t length, const std::string& what) {
  const MappedFile& file = files.get(ref.file);
  checkTensorRef(file, ref, {length}, what);
  DeviceBuffer<__nv_bfloat16> out(static_cast<size_t>(length));
  uploader.copy(file, ref, {0, 1}, {0, length}, out.data());
  return out;
}

DeviceBuffer<__nv_bfloat16> uploadWhole(MappedFiles& files, Uploader& uploader, const TensorRef& ref, int64_t rows,
                                        int64_t cols, const std::string& what) {
  const MappedFile& file = files.get(ref.file);
  checkTensorRef(file, ref, {rows, cols}, what);
  DeviceBuffer<__nv_bfloat16> out(static_cast<size_t>(rows * cols));
  uploader.copy(file, ref, {0, rows}, {0, cols}, out.data());
  return out;
}

// Stacks this rank's slices of `targets` (same input width) row after row into one matrix.
DeviceBuffer<__nv_bfloat16> uploadStacked(MappedFiles& files, Uploader& uploader, const ModelSpec& spec,
                                          const ShardLayout& layout, int layer,
                                          std::initializer_list<std::pair<LoraTarget, const TensorRef*>> targets) {
  int64_t rows = 0;
  int64_t cols = 0;
  for (const auto& [target, ref] : targets) {
    rows += layout.localShape(target).out;
    cols = layout.localShape(target).in;
  }
  DeviceBuffer<__nv_bfloat16> out(static_cast<size_t>(rows * cols));
  int64_t row = 0;
  for (const auto& [target, ref] : targets) {
    const MappedFile& file = files.get(ref->file);
    const TargetShape full = fullTargetShape(spec, target);
    checkTensorRef(file, *ref, {full.out, full.in}, "layer " + std::to_string(layer) + " " + loraTargetName(target));
    uploader.copy(file, *ref, layout.outputRows(target), layout.inputColumns(target), out.data() + row * cols);
    row += layout.localShape(target).out;
  }
  return out;
}

}  // namespace

size_t DeviceModelWeights::bytes() const {
  size_t total = embedTokens.bytes() + lmHead.bytes() + finalNorm.bytes();
  for (const DeviceLayerWeights& layer : layers) {
    total += layer.inputNorm.bytes() + layer.postAttentionNorm.bytes() + layer.qkv.bytes() + layer.o.bytes() +
             layer.gateUp.bytes() + layer.down.bytes();
  }
  return total;
}

DeviceModelWeights uploadModelWeights(const EngineOptions& options, const ShardLayout& layout) {
  const ModelSpec& spec = options.spec;
  const BaseWeightRefs& refs = options.weights;
  if (static_cast<int>(refs.layers.size()) != spec.numLayers) {
    throw std::runtime_error("weights: " + std::to_string(refs.layers.size()) + " layers given, the spec has " +
                             std::to_string(spec.numLayers));
  }
  MappedFiles files;
  Uploader uploader;
  DeviceModelWeights weights;
  // Embeddings, the output projection and the norms are replicated on every rank.
  weights.embedTokens = uploadWhole(files, uploader, refs.embedTokens, spec.vocabSize, spec.hiddenSize, "embed_tokens");
  if (refs.lmHead) {
    weights.lmHead = uploadWhole(files, uploader, *refs.lmHead, spec.vocabSize, spec.hiddenSize, "lm_head");
  }
  weights.finalNorm = uploadVector(files, uploader, refs.finalNorm, spec.hiddenSize, "norm");
  weights.layers.resize(refs.layers.size());
  for (int i = 0; i < spec.numLayers; ++i) {
    const LayerWeightRefs& r = refs.layers[static_cast<size_t>(i)];
    DeviceLayerWeights& layer = weights.layers[static_cast<size_t>(i)];
    const std::string prefix = "layer " + std::to_string(i) + " ";
    layer.inputNorm = uploadVector(files, uploader, r.inputNorm, spec.hiddenSize, prefix + "input_layernorm");
    layer.postAttentionNorm =
        uploadVector(files, uploader, r.postAttentionNorm, spec.hiddenSize, prefix + "post_attention_layernorm");
    layer.qkv = uploadStacked(files, uploader, spec, layout, i,
                              {{LoraTarget::Q, &r.q}, {LoraTarget::K, &r.k}, {LoraTarget::V, &r.v}});
    layer.o = uploadStacked(files, uploader, spec, layout, i, {{LoraTarget::O, &r.o}});
    layer.gateUp = uploadStacked(files, uploader, spec, layout, i, {{LoraTarget::Gate, &r.gate}, {LoraTarget::Up, &r.up}});
    layer.down = uploadStacked(files, uploader, spec, layout, i, {{LoraTarget::Down, &r.down}});
  }
  return weights;
}

}  // namespace loraserve::cuda

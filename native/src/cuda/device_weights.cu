#include <cstdio>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "../safetensors_view.h"
#include "convert_weights.cuh"
#include "cuda_check.h"
#include "device_weights.h"
#include "half_types.cuh"

namespace loraserve::cuda {

namespace {

template <typename T>
constexpr DType storedDtype() {
  return std::is_same_v<T, __half> ? DType::F16 : DType::BF16;
}

// Copies rows x cols of a checked 2-D tensor (a 1-D tensor is one row) into dst as T.
template <typename T>
class Uploader {
 public:
  Uploader() : outOfRange_(1) {}

  void copy(const MappedFile& file, const TensorRef& ref, IndexRange rows, IndexRange cols, T* dst,
            const std::string& what) {
    const int64_t totalCols = ref.shape.empty() ? 1 : ref.shape.back();
    const size_t elementSize = dtypeSize(ref.dtype);
    const uint8_t* src = file.data() + ref.offset + (rows.begin * totalCols + cols.begin) * elementSize;
    const size_t widthBytes = static_cast<size_t>(cols.size()) * elementSize;
    const size_t pitch = static_cast<size_t>(totalCols) * elementSize;
    if (ref.dtype == storedDtype<T>()) {
      checkCuda(cudaMemcpy2D(dst, widthBytes, src, pitch, widthBytes, rows.size(), cudaMemcpyHostToDevice),
                "cudaMemcpy2D (weights)");
      return;
    }
    const size_t bytes = widthBytes * rows.size();
    if (staging_.size() < bytes) staging_.resize(bytes);
    checkCuda(cudaMemcpy2D(staging_.data(), widthBytes, src, pitch, widthBytes, rows.size(), cudaMemcpyHostToDevice),
              "cudaMemcpy2D (weights)");
    checkCuda(cudaMemset(outOfRange_.data(), 0, outOfRange_.bytes()), "cudaMemset (range flag)");
    convertTensor(staging_.data(), ref.dtype, rows.size() * cols.size(), dst, outOfRange_.data(), nullptr);
    int outOfRange = 0;
    checkCuda(cudaMemcpy(&outOfRange, outOfRange_.data(), sizeof outOfRange, cudaMemcpyDeviceToHost),
              "converting weights");
    if (outOfRange) {
      char limit[32];
      std::snprintf(limit, sizeof limit, "%g", HalfType<T>::kMaxFinite);
      throw std::runtime_error(file.path() + ": " + what + " has values beyond " + HalfType<T>::kName + "'s range (" +
                               limit + "): load the model with dtype bfloat16");
    }
  }

 private:
  DeviceBuffer<uint8_t> staging_;
  DeviceBuffer<int> outOfRange_;
};

template <typename T>
DeviceBuffer<T> uploadVector(MappedFiles& files, Uploader<T>& uploader, const TensorRef& ref, int64_t length,
                             const std::string& what) {
  const MappedFile& file = files.get(ref.file);
  checkTensorRef(file, ref, {length}, what);
  DeviceBuffer<T> out(static_cast<size_t>(length));
  uploader.copy(file, ref, {0, 1}, {0, length}, out.data(), what);
  return out;
}

template <typename T>
DeviceBuffer<T> uploadVocabRows(MappedFiles& files, Uploader<T>& uploader, const TensorRef& ref, const ModelSpec& spec,
                                const ShardLayout& layout, const std::string& what) {
  const MappedFile& file = files.get(ref.file);
  checkTensorRef(file, ref, {spec.vocabSize, spec.hiddenSize}, what);
  const IndexRange rows = layout.vocabRows();
  DeviceBuffer<T> out(static_cast<size_t>(rows.size() * spec.hiddenSize));
  uploader.copy(file, ref, rows, {0, spec.hiddenSize}, out.data(), what);
  return out;
}

// Stacks this rank's slices of `targets` (same input width) row after row into one matrix.
template <typename T>
DeviceBuffer<T> uploadStacked(MappedFiles& files, Uploader<T>& uploader, const ModelSpec& spec,
                              const ShardLayout& layout, int layer,
                              std::initializer_list<std::pair<LoraTarget, const TensorRef*>> targets) {
  int64_t rows = 0;
  int64_t cols = 0;
  for (const auto& [target, ref] : targets) {
    rows += layout.localShape(target).out;
    cols = layout.localShape(target).in;
  }
  DeviceBuffer<T> out(static_cast<size_t>(rows * cols));
  int64_t row = 0;
  for (const auto& [target, ref] : targets) {
    const MappedFile& file = files.get(ref->file);
    const TargetShape full = fullTargetShape(spec, target);
    const std::string what = "layer " + std::to_string(layer) + " " + loraTargetName(target);
    checkTensorRef(file, *ref, {full.out, full.in}, what);
    uploader.copy(file, *ref, layout.outputRows(target), layout.inputColumns(target), out.data() + row * cols, what);
    row += layout.localShape(target).out;
  }
  return out;
}

}  // namespace

template <typename T>
size_t DeviceModelWeights<T>::bytes() const {
  size_t total = embedTokens.bytes() + lmHead.bytes() + finalNorm.bytes();
  for (const DeviceLayerWeights<T>& layer : layers) {
    total += layer.inputNorm.bytes() + layer.postAttentionNorm.bytes() + layer.qkv.bytes() + layer.o.bytes() +
             layer.gateUp.bytes() + layer.down.bytes();
  }
  return total;
}

template <typename T>
DeviceModelWeights<T> uploadModelWeights(const EngineOptions& options, const ShardLayout& layout) {
  const ModelSpec& spec = options.spec;
  const BaseWeightRefs& refs = options.weights;
  if (static_cast<int>(refs.layers.size()) != spec.numLayers) {
    throw std::runtime_error("weights: " + std::to_string(refs.layers.size()) + " layers given, the spec has " +
                             std::to_string(spec.numLayers));
  }
  MappedFiles files;
  Uploader<T> uploader;
  DeviceModelWeights<T> weights;
  // Embeddings, the output projection and the norms are replicated on every rank.
  // The embedding and the output projection: this rank's vocabulary rows (ShardLayout::vocabRows).
  weights.embedTokens = uploadVocabRows(files, uploader, refs.embedTokens, spec, layout, "embed_tokens");
  if (refs.lmHead) weights.lmHead = uploadVocabRows(files, uploader, *refs.lmHead, spec, layout, "lm_head");
  weights.finalNorm = uploadVector(files, uploader, refs.finalNorm, spec.hiddenSize, "norm");
  weights.layers.resize(refs.layers.size());
  for (int i = 0; i < spec.numLayers; ++i) {
    const LayerWeightRefs& r = refs.layers[static_cast<size_t>(i)];
    DeviceLayerWeights<T>& layer = weights.layers[static_cast<size_t>(i)];
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

template struct DeviceModelWeights<__half>;
template struct DeviceModelWeights<__nv_bfloat16>;
template DeviceModelWeights<__half> uploadModelWeights(const EngineOptions&, const ShardLayout&);
template DeviceModelWeights<__nv_bfloat16> uploadModelWeights(const EngineOptions&, const ShardLayout&);

}  // namespace loraserve::cuda

#include "tensor_parallel.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace loraserve {

TargetShape fullTargetShape(const ModelSpec& spec, LoraTarget target) {
  const int64_t qDim = spec.numHeads * spec.headDim;
  const int64_t kvDim = spec.numKvHeads * spec.headDim;
  switch (target) {
    case LoraTarget::Q: return {spec.hiddenSize, qDim};
    case LoraTarget::K:
    case LoraTarget::V: return {spec.hiddenSize, kvDim};
    case LoraTarget::O: return {qDim, spec.hiddenSize};
    case LoraTarget::Gate:
    case LoraTarget::Up: return {spec.hiddenSize, spec.intermediateSize};
    case LoraTarget::Down: return {spec.intermediateSize, spec.hiddenSize};
  }
  throw std::logic_error("unknown LoRA target");
}

bool isRowParallel(LoraTarget target) { return target == LoraTarget::O || target == LoraTarget::Down; }

namespace {

// A group of `world` ranks can split the model when every rank gets whole attention heads, a share of the
// intermediate size, and either a share of the KV heads or one of them (replicated, as vLLM does).
bool splits(const ModelSpec& spec, int world) {
  const bool kvHeads = spec.numKvHeads % world == 0 || world % spec.numKvHeads == 0;
  return spec.numHeads % world == 0 && spec.intermediateSize % world == 0 && kvHeads;
}

std::string workingGroupSizes(const ModelSpec& spec) {
  std::string sizes;
  for (int world = 1; world <= spec.numHeads; ++world) {
    if (splits(spec, world)) sizes += (sizes.empty() ? "" : ", ") + std::to_string(world);
  }
  return sizes;
}

}  // namespace

ShardLayout::ShardLayout(const ModelSpec& spec, int rank, int world) : spec_(spec), rank_(rank), world_(world) {
  if (world < 1 || rank < 0 || rank >= world) {
    throw std::runtime_error("tensor parallelism: rank " + std::to_string(rank) + " is not in a group of " +
                             std::to_string(world));
  }
  if (!splits(spec, world)) {
    std::string why;
    auto add = [&](const std::string& text) { why += (why.empty() ? "" : ", ") + text; };
    if (spec.numHeads % world != 0) add("num_attention_heads " + std::to_string(spec.numHeads) + " does not divide by it");
    if (spec.intermediateSize % world != 0) {
      add("intermediate_size " + std::to_string(spec.intermediateSize) + " does not divide by it");
    }
    if (spec.numKvHeads % world != 0 && world % spec.numKvHeads != 0) {
      add("num_key_value_heads " + std::to_string(spec.numKvHeads) + " neither divides by it nor divides it");
    }
    throw std::runtime_error("tensor parallelism: this model cannot be split over " + std::to_string(world) +
                             " ranks (" + why + "); group sizes that work: " + workingGroupSizes(spec));
  }
  localHeads_ = spec.numHeads / world;
  localIntermediate_ = spec.intermediateSize / world;
  if (world <= spec.numKvHeads) {
    localKvHeads_ = spec.numKvHeads / world;
    firstKvHead_ = rank * localKvHeads_;
  } else {
    // More ranks than KV heads: each rank keeps the one KV head its query heads read.
    localKvHeads_ = 1;
    firstKvHead_ = rank * spec.numKvHeads / world;
  }
  vocabPerRank_ = (spec.vocabSize + world - 1) / world;
}

IndexRange ShardLayout::vocabRows() const {
  const int64_t begin = std::min<int64_t>(spec_.vocabSize, rank_ * vocabPerRank_);
  return {begin, std::min<int64_t>(spec_.vocabSize, begin + vocabPerRank_)};
}

IndexRange ShardLayout::splitRange(LoraTarget target) const {
  switch (target) {
    case LoraTarget::Q:
    case LoraTarget::O: {
      const int64_t width = localHeads_ * spec_.headDim;
      return {rank_ * width, (rank_ + 1) * width};
    }
    case LoraTarget::K:
    case LoraTarget::V: {
      return {firstKvHead_ * spec_.headDim, (firstKvHead_ + localKvHeads_) * spec_.headDim};
    }
    case LoraTarget::Gate:
    case LoraTarget::Up:
    case LoraTarget::Down: return {rank_ * localIntermediate_, (rank_ + 1) * localIntermediate_};
  }
  throw std::logic_error("unknown LoRA target");
}

IndexRange ShardLayout::outputRows(LoraTarget target) const {
  return isRowParallel(target) ? IndexRange{0, fullTargetShape(spec_, target).out} : splitRange(target);
}

IndexRange ShardLayout::inputColumns(LoraTarget target) const {
  return isRowParallel(target) ? splitRange(target) : IndexRange{0, fullTargetShape(spec_, target).in};
}

TargetShape ShardLayout::localShape(LoraTarget target) const {
  return {inputColumns(target).size(), outputRows(target).size()};
}

}  // namespace loraserve

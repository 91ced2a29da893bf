#include "tensor_parallel.h"

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

ShardLayout::ShardLayout(const ModelSpec& spec, int rank, int world) : spec_(spec), rank_(rank), world_(world) {
  if (world < 1 || rank < 0 || rank >= world) {
    throw std::runtime_error("tensor parallelism: rank " + std::to_string(rank) + " is not in a group of " +
                             std::to_string(world));
  }
  auto requireDivisible = [world](int64_t value, const char* what) {
    if (value % world != 0) {
      throw std::runtime_error(std::string("tensor parallelism: ") + what + " (" + std::to_string(value) +
                               ") does not divide by the group size " + std::to_string(world));
    }
  };
  requireDivisible(spec.numHeads, "num_attention_heads");
  requireDivisible(spec.numKvHeads, "num_key_value_heads");
  requireDivisible(spec.intermediateSize, "intermediate_size");
  localHeads_ = spec.numHeads / world;
  localKvHeads_ = spec.numKvHeads / world;
  localIntermediate_ = spec.intermediateSize / world;
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
      const int64_t width = localKvHeads_ * spec_.headDim;
      return {rank_ * width, (rank_ + 1) * width};
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

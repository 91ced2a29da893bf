#include "host_adapter.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace loraserve {

CheckedAdapter checkAdapter(const AdapterRefs& refs, const ModelSpec& spec, const ShardLayout& layout,
                            int maxLoraRank) {
  if (refs.rank < 1 || refs.rank > maxLoraRank) {
    throw std::runtime_error("adapter rank " + std::to_string(refs.rank) + " is outside [1, " +
                             std::to_string(maxLoraRank) + "] (maxLoraRank)");
  }
  if (!std::isfinite(refs.scaling)) throw std::runtime_error("adapter scaling is not a finite number");
  CheckedAdapter adapter;
  adapter.rank = refs.rank;
  adapter.scaling = static_cast<float>(refs.scaling);
  adapter.layers.resize(spec.numLayers);
  for (const auto& [path, bytes] : refs.fileBytes) adapter.files.borrow(path, bytes.data, bytes.size);
  for (const LoraPairRef& pair : refs.pairs) {
    const std::string what = "layer " + std::to_string(pair.layer) + " " + loraTargetName(pair.target);
    if (pair.layer < 0 || pair.layer >= spec.numLayers) {
      throw std::runtime_error(pair.a.file + ": LoRA " + what + " names a layer the base (" +
                               std::to_string(spec.numLayers) + " layers) does not have");
    }
    std::optional<LoraPairSource>& slot = adapter.layers[pair.layer][static_cast<int>(pair.target)];
    if (slot) throw std::runtime_error(pair.a.file + ": LoRA " + what + " is given twice");
    const TargetShape full = fullTargetShape(spec, pair.target);
    const MappedFile& aFile = adapter.files.get(pair.a.file);
    const MappedFile& bFile = adapter.files.get(pair.b.file);
    checkTensorRef(aFile, pair.a, {refs.rank, full.in}, what + " lora_A");
    checkTensorRef(bFile, pair.b, {full.out, refs.rank}, what + " lora_B");
    slot = LoraPairSource{&aFile, pair.a, layout.inputColumns(pair.target), &bFile, pair.b,
                          layout.outputRows(pair.target)};
  }
  return adapter;
}

HostAdapter readHostAdapter(const CheckedAdapter& adapter) {
  HostAdapter host;
  host.rank = adapter.rank;
  host.scaling = adapter.scaling;
  host.layers.resize(adapter.layers.size());
  const IndexRange wholeRank{0, adapter.rank};
  for (size_t layer = 0; layer < adapter.layers.size(); ++layer) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const std::optional<LoraPairSource>& pair = adapter.layers[layer][static_cast<size_t>(t)];
      if (!pair) continue;
      host.layers[layer][static_cast<size_t>(t)] =
          HostLoraPair{readMatrix(*pair->aFile, pair->a, wholeRank, pair->aColumns),
                       readMatrix(*pair->bFile, pair->b, pair->bRows, wholeRank)};
    }
  }
  return host;
}

}  // namespace loraserve

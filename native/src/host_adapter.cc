#include "host_adapter.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace loraserve {

HostAdapter loadHostAdapter(const AdapterRefs& refs, const ModelSpec& spec, const ShardLayout& layout,
                            int maxLoraRank) {
  if (refs.rank < 1 || refs.rank > maxLoraRank) {
    throw std::runtime_error("adapter rank " + std::to_string(refs.rank) + " is outside [1, " +
                             std::to_string(maxLoraRank) + "] (maxLoraRank)");
  }
  if (!std::isfinite(refs.scaling)) throw std::runtime_error("adapter scaling is not a finite number");
  HostAdapter adapter;
  adapter.rank = refs.rank;
  adapter.scaling = static_cast<float>(refs.scaling);
  adapter.layers.resize(spec.numLayers);
  MappedFiles files;
  for (const auto& [path, bytes] : refs.fileBytes) files.borrow(path, bytes.data, bytes.size);
  for (const LoraPairRef& pair : refs.pairs) {
    const std::string what = "layer " + std::to_string(pair.layer) + " " + loraTargetName(pair.target);
    if (pair.layer < 0 || pair.layer >= spec.numLayers) {
      throw std::runtime_error(pair.a.file + ": LoRA " + what + " names a layer the base (" +
                               std::to_string(spec.numLayers) + " layers) does not have");
    }
    std::optional<HostLoraPair>& slot = adapter.layers[pair.layer][static_cast<int>(pair.target)];
    if (slot) throw std::runtime_error(pair.a.file + ": LoRA " + what + " is given twice");
    const TargetShape full = fullTargetShape(spec, pair.target);
    const MappedFile& aFile = files.get(pair.a.file);
    const MappedFile& bFile = files.get(pair.b.file);
    checkTensorRef(aFile, pair.a, {refs.rank, full.in}, what + " lora_A");
    checkTensorRef(bFile, pair.b, {full.out, refs.rank}, what + " lora_B");
    const IndexRange wholeRank{0, refs.rank};
    slot = HostLoraPair{readMatrix(aFile, pair.a, wholeRank, layout.inputColumns(pair.target)),
                        readMatrix(bFile, pair.b, layout.outputRows(pair.target), wholeRank)};
  }
  return adapter;
}

}  // namespace loraserve

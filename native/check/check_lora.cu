// cuda::loraShrink + cuda::loraExpand (through cuda::AdapterSlots, the slot load's dtype conversions included)
// against the CPU addLoraDelta(): the delta each adds to a float32 output, compared element-wise.
#include <functional>
#include <memory>

#include "../src/cpu/lora.h"
#include "../src/cuda/adapter_slots.h"
#include "../src/cuda/lora_shrink_expand.cuh"
#include "check_common.cuh"

namespace loraserve::check {
namespace {

// Adapter values that float16 and bfloat16 both hold exactly, so the slot load's conversion to T (from any stored
// dtype) is exact and the reference, which reads the stored values, sees what the kernels read. A wrong conversion
// still shows: it changes values, not roundings.
std::vector<float> exactInBoth(std::vector<float> v) {
  for (int pass = 0; pass < 3; ++pass) v = exactIn<__half>(exactIn<__nv_bfloat16>(std::move(v)));
  return v;
}

// Mixed adapters: three ranks up to maxRank, targets left out, rows without an adapter; `segments` are (slot,
// rows) pairs: prefill-sized and decode segments together, or decode rows alone (the kernels' one-row form).
template <typename T>
void checkSegments(const std::string& shape, const std::vector<std::pair<int, int>>& segments, int maxRank = 16,
                   std::vector<int> ranks = {4, 16, 8}, float bFactor = 1.0f) {
  ModelSpec spec;
  spec.hiddenSize = 256;
  spec.intermediateSize = 512;
  spec.numLayers = 2;
  spec.numHeads = 8;
  spec.numKvHeads = 2;
  spec.headDim = 32;
  spec.vocabSize = 64;
  const ShardLayout layout(spec, 0, 1);
  // Each adapter stored in another dtype, so the slot load's conversions are all checked; B times a bFactor far
  // below 1 needs float32's or bfloat16's range to be stored at all.
  const std::vector<DType> dtypes = {DType::F32, DType::BF16, bFactor == 1.0f ? DType::F16 : DType::F32};
  cuda::AdapterSlots<T> slots(spec, layout, static_cast<int>(ranks.size()), maxRank);
  std::vector<std::shared_ptr<const HostAdapter>> adapters(ranks.size());
  // An adapter's safetensors bytes (kept alive while its slot is loaded) and what checkAdapter makes of them:
  // rank `rank`, stored as `dtype`, leaving out the targets `skip` names.
  auto makeAdapter = [&](const std::string& name, int rank, DType dtype, double scaling, float scale, float bFactor,
                         const std::function<bool(int layer, int target)>& skip, std::vector<uint8_t>& bytes) {
    AdapterRefs refs;
    refs.rank = rank;
    refs.scaling = scaling;
    bytes.assign(3, 0);  // an odd header length: tensors start at unaligned offsets, as they may in real files
    auto store = [&](int64_t rows, int64_t cols, float factor) {
      TensorRef ref{name, dtype, {rows, cols}, bytes.size(), 0};
      for (float value : exactInBoth(randomFloats(static_cast<size_t>(rows * cols), scale))) {
        value *= factor;  // a power of two: exact in float32 and bfloat16
        uint8_t raw[4];
        if (ref.dtype == DType::F32) {
          std::memcpy(raw, &value, 4);
        } else {
          const uint16_t bits = ref.dtype == DType::BF16 ? __nv_bfloat16_raw(__float2bfloat16(value)).x
                                                         : __half_raw(__float2half(value)).x;
          std::memcpy(raw, &bits, 2);
        }
        bytes.insert(bytes.end(), raw, raw + dtypeSize(ref.dtype));
      }
      ref.nbytes = bytes.size() - ref.offset;
      return ref;
    };
    for (int layer = 0; layer < spec.numLayers; ++layer) {
      for (int t = 0; t < kNumLoraTargets; ++t) {
        if (skip(layer, t)) continue;
        const TargetShape shape = layout.localShape(static_cast<LoraTarget>(t));
        LoraPairRef pair;
        pair.layer = layer;
        pair.target = static_cast<LoraTarget>(t);
        pair.a = store(rank, shape.in, 1.0f);
        pair.b = store(shape.out, rank, bFactor);
        refs.pairs.push_back(pair);
      }
    }
    // Borrowed once every tensor is stored: until then offsets, not pointers, name them.
    refs.fileBytes[name] = BorrowedBytes{bytes.data(), bytes.size()};
    return checkAdapter(refs, spec, layout, maxRank);
  };
  // Every slot first holds a full-rank adapter of large values on every target, so that the adapters loaded over
  // it below read as their own only if a load writes zeros wherever the kernels read past its rank (a load runs
  // no memset on the GPU: adapter_slots.h).
  for (size_t s = 0; s < ranks.size(); ++s) {
    std::vector<uint8_t> stale;
    slots.load(static_cast<int>(s), makeAdapter("stale.safetensors", maxRank, DType::F32, 1.0, 4.0f, 1.0f, [](int, int) { return false; }, stale));
    slots.unload(static_cast<int>(s));
  }
  std::vector<std::vector<uint8_t>> files(ranks.size());
  for (size_t s = 0; s < ranks.size(); ++s) {
    // Scalings of powers of two, which the CPU reference applies in its own order: exact either way.
    const auto leftOut = [s](int layer, int t) { return (t + layer + static_cast<int>(s)) % 3 == 0; };
    const CheckedAdapter checked = makeAdapter("adapter-" + std::to_string(s) + ".safetensors", ranks[s], dtypes[s],
                                               std::ldexp(0.5, static_cast<int>(s)), 0.1f, bFactor, leftOut, files[s]);
    slots.load(static_cast<int>(s), checked);
    // The reference reads the stored values exactly; the slot holds the same values in T (exactInBoth).
    adapters[s] = std::make_shared<const HostAdapter>(readHostAdapter(checked));
  }
  ForwardBatch batch;
  for (const auto& [slot, rows] : segments) {
    BatchSegment segment;
    segment.firstRow = static_cast<int64_t>(batch.tokens.size());
    segment.numRows = rows;
    segment.adapterSlot = slot;
    batch.segments.push_back(segment);
    batch.tokens.resize(batch.tokens.size() + rows, 0);
  }
  const int rows = static_cast<int>(batch.tokens.size());
  const std::vector<LoraGroup> groups = groupRowsByAdapter(batch, adapters);
  // The group layout the CUDA backend uses: q/k/v, o, gate/up and down.
  const std::vector<std::vector<LoraTarget>> fused = {
      {LoraTarget::Q, LoraTarget::K, LoraTarget::V}, {LoraTarget::O}, {LoraTarget::Gate, LoraTarget::Up}, {LoraTarget::Down}};
  std::vector<cuda::LoraTile> tiles;
  for (const BatchSegment& segment : batch.segments) {
    if (segment.adapterSlot < 0) continue;
    for (int64_t r = 0; r < segment.numRows; r += cuda::kLoraTileRows) {
      tiles.push_back({static_cast<int>(segment.firstRow + r), static_cast<int>(std::min<int64_t>(cuda::kLoraTileRows, segment.numRows - r)), segment.adapterSlot});
    }
  }
  int maxTileRows = 0;
  for (const cuda::LoraTile& tile : tiles) maxTileRows = std::max(maxTileRows, tile.numRows);
  auto dtiles = toDevice(tiles);
  cuda::DeviceBuffer<float> v(static_cast<size_t>(rows) * cuda::loraIntermediateStride(slots.maxRank()));
  for (int layer = 0; layer < spec.numLayers; ++layer) {
    for (const std::vector<LoraTarget>& targets : fused) {
      const int in = static_cast<int>(layout.localShape(targets[0]).in);
      int width = 0;
      for (LoraTarget t : targets) width += static_cast<int>(layout.localShape(t).out);
      const std::vector<float> x = exactIn<T>(randomFloats(static_cast<size_t>(rows) * in));
      // A faint delta would drown in the rounding of a y near 1: those cases start from y = 0.
      const std::vector<float> y = bFactor == 1.0f ? randomFloats(static_cast<size_t>(rows) * width)
                                                   : std::vector<float>(static_cast<size_t>(rows) * width, 0.0f);
      std::vector<float> expected(y.size());
      int column = 0;
      for (LoraTarget t : targets) {
        const int out = static_cast<int>(layout.localShape(t).out);
        std::vector<float> part(static_cast<size_t>(rows) * out);
        for (int r = 0; r < rows; ++r) std::copy_n(y.begin() + static_cast<size_t>(r) * width + column, out, part.begin() + static_cast<size_t>(r) * out);
        addLoraDelta(groups, layer, t, x.data(), in, part.data(), out);
        for (int r = 0; r < rows; ++r) std::copy_n(part.begin() + static_cast<size_t>(r) * out, out, expected.begin() + static_cast<size_t>(r) * width + column);
        column += out;
      }
      const cuda::LoraGroup group = slots.group(layer, targets);
      auto dx = toDevice(narrow<T>(x));
      auto dy = toDevice(y);
      cuda::loraShrink(dx.data(), dtiles.data(), static_cast<int>(tiles.size()), maxTileRows, slots.view(), group, v.data(), nullptr);
      cuda::loraExpand(v.data(), dtiles.data(), static_cast<int>(tiles.size()), maxTileRows, slots.view(), group, dy.data(), width, nullptr);
      std::vector<float> deltaOurs = toHost(dy), deltaRef = expected;
      // Divided by bFactor (a power of two: exact), a faint delta meets the tolerance made for deltas near 1.
      for (size_t i = 0; i < y.size(); ++i) {
        deltaOurs[i] = (deltaOurs[i] - y[i]) / bFactor;
        deltaRef[i] = (deltaRef[i] - y[i]) / bFactor;
      }
      std::string names;
      for (LoraTarget t : targets) names += std::string(names.empty() ? "" : "+") + loraTargetName(t);
      compare(tagged<T>("lora shrink/expand " + shape + " layer " + std::to_string(layer) + " " + names + " (delta)"), deltaOurs,
              deltaRef, tolerance<T>(), {rows, width});
    }
  }
}

template <typename T>
void checkAll() {
  checkSegments<T>("mixed", {{0, 37}, {-1, 5}, {1, 1}, {2, 20}, {-1, 1}, {1, 1}, {2, 1}});
  checkSegments<T>("decode", {{0, 1}, {-1, 1}, {1, 1}, {2, 1}, {1, 1}, {0, 1}});
  // A maximum rank that is not a power of two, and one past 256 (more than a warp's lanes per B row).
  checkSegments<T>("decode max rank 24", {{0, 1}, {1, 1}, {-1, 1}, {2, 1}}, 24, {8, 24, 16});
  checkSegments<T>("mixed max rank 24", {{0, 19}, {1, 1}, {2, 3}}, 24, {8, 24, 16});
  checkSegments<T>("decode max rank 264", {{0, 1}, {1, 1}, {2, 1}}, 264, {8, 264, 136});
  // B about 1e-7, as small as trained B times a small scaling gets: below float16's smallest normal (6.1e-5),
  // even below its smallest subnormal, yet the kernels must read it at full precision.
  checkSegments<T>("decode faint B", {{0, 1}, {1, 1}, {2, 1}}, 16, {4, 16, 8}, std::ldexp(1.0f, -20));
  checkSegments<T>("mixed faint B", {{0, 17}, {1, 1}, {2, 2}}, 16, {4, 16, 8}, std::ldexp(1.0f, -20));
}

}  // namespace

void checkLora() {
  checkAll<__half>();
  checkAll<__nv_bfloat16>();
}

}  // namespace loraserve::check

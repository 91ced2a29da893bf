#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

#include "adapter_slots.h"
#include "cuda_check.h"
#include "half_types.cuh"
#include "host_half.h"
#include "../safetensors_view.h"

namespace loraserve::cuda {

namespace {

int slotRank(int maxLoraRank) { return (std::max(maxLoraRank, 1) + 7) / 8 * 8; }

}  // namespace

template <typename T>
size_t AdapterSlots<T>::slotBytes(const ModelSpec& spec, const ShardLayout& layout, int maxLoraRank) {
  int64_t layerElements = 0;
  for (int t = 0; t < kNumLoraTargets; ++t) {
    const TargetShape shape = layout.localShape(static_cast<LoraTarget>(t));
    layerElements += static_cast<int64_t>(slotRank(maxLoraRank)) * (shape.in + shape.out);
  }
  return static_cast<size_t>(layerElements * spec.numLayers) * sizeof(T);
}

template <typename T>
AdapterSlots<T>::AdapterSlots(const ModelSpec& spec, const ShardLayout& layout, int maxLoras, int maxLoraRank)
    : layout_(layout),
      numLayers_(spec.numLayers),
      maxLoras_(maxLoras),
      maxRank_(slotRank(maxLoraRank)),
      targetOffsets_(kNumLoraTargets),
      // No slots, nothing to convert: one thread (the caller's, so none is started).
      converters_(maxLoras > 0 ? std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kConverterThreads) : 1) {
  for (int t = 0; t < kNumLoraTargets; ++t) {
    const TargetShape shape = layout.localShape(static_cast<LoraTarget>(t));
    targetOffsets_[static_cast<size_t>(t)] = layerElements_;
    layerElements_ += static_cast<int64_t>(maxRank_) * (shape.in + shape.out);
  }
  slotElements_ = layerElements_ * numLayers_;
  if (maxLoras == 0) return;
  weights_.resize(static_cast<size_t>(slotElements_ * maxLoras));
  checkCuda(cudaMemset(weights_.data(), 0, weights_.bytes()), "cudaMemset (adapter slots)");
  std::vector<const T*> pointers(static_cast<size_t>(maxLoras));
  for (int s = 0; s < maxLoras; ++s) pointers[static_cast<size_t>(s)] = weights_.data() + s * slotElements_;
  slotPointers_.resize(pointers.size());
  checkCuda(cudaMemcpy(slotPointers_.data(), pointers.data(), slotPointers_.bytes(), cudaMemcpyHostToDevice),
            "cudaMemcpy (slot pointers)");
  ranks_.resize(static_cast<size_t>(maxLoras) * numLayers_ * kNumLoraTargets);
  checkCuda(cudaMemset(ranks_.data(), 0, ranks_.bytes()), "cudaMemset (adapter ranks)");
  scales_.resize(ranks_.size());
  checkCuda(cudaMemset(scales_.data(), 0, scales_.bytes()), "cudaMemset (adapter scales)");
  // Loads only copy: the stream's priority matters to no kernel, and being non-blocking keeps it off the steps.
  checkCuda(cudaStreamCreateWithFlags(&loadStream_, cudaStreamNonBlocking), "cudaStreamCreate (adapter loads)");
  image_.resize(static_cast<size_t>(slotElements_));
}

template <typename T>
AdapterSlots<T>::~AdapterSlots() {
  if (loadStream_) cudaStreamDestroy(loadStream_);
}

template <typename T>
int64_t AdapterSlots<T>::aOffset(int layer, LoraTarget target) const {
  return layer * layerElements_ + targetOffsets_[static_cast<size_t>(target)];
}

template <typename T>
int64_t AdapterSlots<T>::bOffset(int layer, LoraTarget target) const {
  return aOffset(layer, target) + static_cast<int64_t>(maxRank_) * layout_.localShape(target).in;
}

namespace {

// One stored row of `cols` elements (little-endian bytes at any offset: a tensor starts anywhere in its file)
// as the bits of T(scale * value).
template <typename T>
void convertRow(const uint8_t* src, DType dtype, int cols, float scale, uint16_t* dst) {
  switch (dtype) {
    case DType::F32:
      for (int c = 0; c < cols; ++c) {
        float value;
        std::memcpy(&value, src + 4 * c, sizeof value);
        dst[c] = hostBitsOf<T>(scale * value);
      }
      break;
    case DType::BF16:
      for (int c = 0; c < cols; ++c) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * c, sizeof bits);
        dst[c] = hostBitsOf<T>(scale * bitsFloat(static_cast<uint32_t>(bits) << 16));
      }
      break;
    case DType::F16:
      for (int c = 0; c < cols; ++c) {
        __half_raw raw;
        std::memcpy(&raw.x, src + 2 * c, sizeof raw.x);
        dst[c] = hostBitsOf<T>(scale * __half2float(__half(raw)));
      }
      break;
  }
}

// The largest |value| of one stored row of `cols` elements. With the sign bit cleared, the bits of finite values
// of all three dtypes order as their magnitudes do, so the row is scanned as integers, one branch-free loop per
// dtype, and only the largest is converted.
float rowMaxAbs(const uint8_t* src, DType dtype, int cols) {
  if (dtype == DType::F32) {
    uint32_t largest = 0;
    for (int c = 0; c < cols; ++c) {
      uint32_t bits;
      std::memcpy(&bits, src + 4 * c, sizeof bits);
      largest = std::max(largest, bits & 0x7fffffffu);
    }
    return bitsFloat(largest);
  }
  uint16_t largest = 0;
  for (int c = 0; c < cols; ++c) {
    uint16_t bits;
    std::memcpy(&bits, src + 2 * c, sizeof bits);
    largest = std::max(largest, static_cast<uint16_t>(bits & 0x7fffu));
  }
  return dtype == DType::BF16 ? bfloat16ToFloat(largest) : halfToFloat(largest);
}

// The power of two that brings a matrix whose largest |value| is maxAbs to [2^14, 2^15) in float16, so that
// values 2^24 times smaller still round as normals. Exact: only the exponent changes.
float float16UnitScale(float maxAbs) {
  if (!(maxAbs > 0.0f) || !std::isfinite(maxAbs)) return 1.0f;
  int exponent = 0;
  std::frexp(maxAbs, &exponent);  // maxAbs = m 2^exponent, m in [0.5, 1)
  return std::ldexp(1.0f, 15 - exponent);
}

}  // namespace

// One A or B of the adapter: a window of whole stored rows, and where its values go in the slot image.
template <typename T>
struct AdapterSlots<T>::Piece {
  const uint8_t* src = nullptr;  // the window's first element
  int64_t srcRowBytes = 0;
  DType dtype = DType::BF16;
  int64_t dst = 0;  // element offset in the slot
  int64_t dstPitch = 0;
  int rows = 0, cols = 0;
  int readRows = 0;  // rows the kernels read: those past `rows`, and columns past `cols`, are zeros
  size_t target = 0;   // the (layer, target) index of the ranks and scales
  float scale = 1.0f;  // what the stored values were multiplied by: a power of two, set by fillImage
};

template <typename T>
void AdapterSlots<T>::load(int slot, const CheckedAdapter& adapter) {
  std::lock_guard<std::mutex> lock(loadMutex_);
  std::vector<int32_t> ranks(static_cast<size_t>(numLayers_) * kNumLoraTargets, 0);
  std::vector<float> scales(ranks.size(), 0.0f);
  std::vector<Piece> pieces;
  // What the kernels read of each target: A's rows and B's columns up to the rank rounded up to 8. A's rows are
  // contiguous; B's columns are not (B is [out][maxRank]), so B goes whole, one contiguous copy rather than a
  // strided one per row. Those ranges of the image are written whole, zeros where the adapter has no value.
  std::vector<SlotRange> ranges;
  auto add = [&pieces](const MappedFile* file, const TensorRef& ref, IndexRange rows, IndexRange cols, int readRows,
                       int64_t dst, int64_t dstPitch, size_t target) {
    const size_t element = dtypeSize(ref.dtype);
    const size_t rowBytes = static_cast<size_t>(ref.shape.back()) * element;
    Piece piece;
    piece.src = file->data() + ref.offset + static_cast<size_t>(rows.begin) * rowBytes + static_cast<size_t>(cols.begin) * element;
    piece.srcRowBytes = static_cast<int64_t>(rowBytes);
    piece.dtype = ref.dtype;
    piece.dst = dst;
    piece.dstPitch = dstPitch;
    piece.rows = static_cast<int>(rows.size());
    piece.cols = static_cast<int>(cols.size());
    piece.readRows = readRows;
    piece.target = target;
    pieces.push_back(piece);
  };
  const int readRank = (adapter.rank + 7) / 8 * 8;
  for (int layer = 0; layer < numLayers_; ++layer) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const std::optional<LoraPairSource>& pair = adapter.layers[static_cast<size_t>(layer)][static_cast<size_t>(t)];
      if (!pair) continue;
      const LoraTarget target = static_cast<LoraTarget>(t);
      const TargetShape shape = layout_.localShape(target);
      const IndexRange wholeRank{0, adapter.rank};
      const size_t index = static_cast<size_t>(layer * kNumLoraTargets + t);
      add(pair->aFile, pair->a, wholeRank, pair->aColumns, readRank, aOffset(layer, target), pair->aColumns.size(), index);
      add(pair->bFile, pair->b, pair->bRows, wholeRank, static_cast<int>(pair->bRows.size()), bOffset(layer, target),
          maxRank_, index);
      ranges.push_back({aOffset(layer, target), aOffset(layer, target) + readRank * shape.in});
      ranges.push_back({bOffset(layer, target), bOffset(layer, target) + shape.out * maxRank_});
      ranks[index] = adapter.rank;
    }
  }
  fillImage(pieces);
  // The expand multiplies by the adapter's scaling over the powers of two its A and B were stored times.
  std::vector<double> stored(ranks.size(), 1.0);
  for (const Piece& piece : pieces) stored[piece.target] *= piece.scale;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (ranks[i] > 0) scales[i] = static_cast<float>(adapter.scaling / stored[i]);
  }
  try {
    copyImage(slot, ranges);
  } catch (...) {
    // Copies already queued read the image: the next load may not refill it before they are done.
    cudaStreamSynchronize(loadStream_);
    throw;
  }
  publishTargets(slot, ranks, scales);
}

template <typename T>
void AdapterSlots<T>::fillImage(std::vector<Piece>& pieces) {
  auto* image = reinterpret_cast<uint16_t*>(image_.data());
  converters_.parallelFor(static_cast<int64_t>(pieces.size()), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      Piece& piece = pieces[static_cast<size_t>(i)];
      // float16 pieces are scanned for their largest value first, by the thread that then converts them: the
      // piece (one A or B of one layer: hundreds of KB at rank 16) is still in its caches for the second read.
      if (std::is_same_v<T, __half>) {
        float largest = 0.0f;
        for (int r = 0; r < piece.rows; ++r) {
          largest = std::max(largest, rowMaxAbs(piece.src + r * piece.srcRowBytes, piece.dtype, piece.cols));
        }
        piece.scale = float16UnitScale(largest);
      }
      for (int r = 0; r < piece.readRows; ++r) {
        uint16_t* dst = image + piece.dst + r * piece.dstPitch;
        const int written = r < piece.rows ? piece.cols : 0;
        if (written > 0) convertRow<T>(piece.src + r * piece.srcRowBytes, piece.dtype, written, piece.scale, dst);
        std::fill(dst + written, dst + piece.dstPitch, uint16_t{0});  // +0.0 in both 16-bit types
      }
    }
  });
}

template <typename T>
void AdapterSlots<T>::copyImage(int slot, std::vector<SlotRange> ranges) {
  // Ranges that touch are sent as one copy: with a slot of the adapter's own rank, the whole layer at once.
  std::sort(ranges.begin(), ranges.end(), [](const SlotRange& a, const SlotRange& b) { return a.begin < b.begin; });
  T* device = weights_.data() + slot * slotElements_;
  for (size_t i = 0; i < ranges.size();) {
    SlotRange run = ranges[i++];
    while (i < ranges.size() && ranges[i].begin <= run.end) run.end = std::max(run.end, ranges[i++].end);
    checkCuda(cudaMemcpyAsync(device + run.begin, image_.data() + run.begin, static_cast<size_t>(run.end - run.begin) * sizeof(T),
                              cudaMemcpyHostToDevice, loadStream_),
              "cudaMemcpyAsync (adapter slot)");
  }
}

template <typename T>
void AdapterSlots<T>::unload(int slot) {
  std::lock_guard<std::mutex> lock(loadMutex_);
  const size_t targets = static_cast<size_t>(numLayers_) * kNumLoraTargets;
  publishTargets(slot, std::vector<int32_t>(targets, 0), std::vector<float>(targets, 0.0f));
}

template <typename T>
void AdapterSlots<T>::publishTargets(int slot, const std::vector<int32_t>& ranks, const std::vector<float>& scales) {
  // Stream order puts the ranks and scales after the weights; the synchronise makes them all visible before the
  // engine hands the slot to a step.
  checkCuda(cudaMemcpyAsync(scales_.data() + static_cast<size_t>(slot) * scales.size(), scales.data(),
                            scales.size() * sizeof(float), cudaMemcpyHostToDevice, loadStream_),
            "cudaMemcpyAsync (adapter scales)");
  checkCuda(cudaMemcpyAsync(ranks_.data() + static_cast<size_t>(slot) * ranks.size(), ranks.data(),
                            ranks.size() * sizeof(int32_t), cudaMemcpyHostToDevice, loadStream_),
            "cudaMemcpyAsync (adapter ranks)");
  checkCuda(cudaStreamSynchronize(loadStream_), "cudaStreamSynchronize (adapter load)");
}

template <typename T>
LoraSlots<T> AdapterSlots<T>::view() const {
  return LoraSlots<T>{slotPointers_.data(), ranks_.data(), scales_.data(), numLayers_, maxRank_};
}

template <typename T>
LoraGroup AdapterSlots<T>::group(int layer, const std::vector<LoraTarget>& targets) const {
  LoraGroup group;
  group.layer = layer;
  int column = 0;
  for (LoraTarget target : targets) {
    const int g = group.numTargets++;
    const TargetShape shape = layout_.localShape(target);
    group.inDim = static_cast<int>(shape.in);
    group.target[g] = static_cast<int>(target);
    group.outOffset[g] = column;
    group.outDim[g] = static_cast<int>(shape.out);
    group.aOffset[g] = aOffset(layer, target);
    group.bOffset[g] = bOffset(layer, target);
    column += group.outDim[g];
  }
  return group;
}

template class AdapterSlots<__half>;
template class AdapterSlots<__nv_bfloat16>;

}  // namespace loraserve::cuda

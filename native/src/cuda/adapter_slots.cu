#include <algorithm>
#include <stdexcept>
#include <string>

#include "adapter_slots.h"
#include "cuda_check.h"
#include "half_types.cuh"

namespace loraserve::cuda {

template <typename T>
AdapterSlots<T>::AdapterSlots(const ModelSpec& spec, const ShardLayout& layout, int maxLoras, int maxLoraRank)
    : layout_(layout),
      numLayers_(spec.numLayers),
      maxLoras_(maxLoras),
      maxRank_((std::max(maxLoraRank, 1) + 7) / 8 * 8),
      targetOffsets_(kNumLoraTargets) {
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
  // The lowest priority: a load's conversion blocks yield the multiprocessors to the steps' kernels.
  int lowest = 0, highest = 0;
  checkCuda(cudaDeviceGetStreamPriorityRange(&lowest, &highest), "cudaDeviceGetStreamPriorityRange");
  checkCuda(cudaStreamCreateWithPriority(&loadStream_, cudaStreamNonBlocking, lowest), "cudaStreamCreate (adapter loads)");
  upload_ = std::make_unique<PinnedUpload>(loadStream_);
  staging_.resize(static_cast<size_t>(slotElements_) * sizeof(T));
  windowsHost_.resize(static_cast<size_t>(numLayers_) * kNumLoraTargets * 2);
  windows_.resize(windowsHost_.size());
}

template <typename T>
AdapterSlots<T>::~AdapterSlots() {
  upload_.reset();
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

// One A or B of the adapter: the file bytes of the window's whole rows, and where its converted values go.
template <typename T>
struct AdapterSlots<T>::Piece {
  const MappedFile* file = nullptr;
  size_t begin = 0, end = 0;
  size_t firstColumnBytes = 0;  // the window's first element from the start of its row
  ConvertWindow<T> window;      // src is set once the bytes are staged
};

template <typename T>
void AdapterSlots<T>::load(int slot, const CheckedAdapter& adapter) {
  std::lock_guard<std::mutex> lock(loadMutex_);
  T* image = weights_.data() + slot * slotElements_;
  // Rows of A and columns of B past the adapter's rank must read as zeros, whatever the slot held before.
  checkCuda(cudaMemsetAsync(image, 0, static_cast<size_t>(slotElements_) * sizeof(T), loadStream_),
            "cudaMemsetAsync (adapter slot)");
  std::vector<int32_t> ranks(static_cast<size_t>(numLayers_) * kNumLoraTargets, 0);
  std::vector<Piece> pieces;
  auto add = [&pieces](const MappedFile* file, const TensorRef& ref, IndexRange rows, IndexRange cols,
                       T* dst, int64_t dstPitch, float scale) {
    const size_t element = dtypeSize(ref.dtype);
    const size_t rowBytes = static_cast<size_t>(ref.shape.back()) * element;
    Piece piece;
    piece.file = file;
    piece.begin = ref.offset + static_cast<size_t>(rows.begin) * rowBytes;
    piece.end = ref.offset + static_cast<size_t>(rows.end) * rowBytes;
    piece.firstColumnBytes = static_cast<size_t>(cols.begin) * element;
    piece.window.srcRowBytes = static_cast<int64_t>(rowBytes);
    piece.window.dst = dst;
    piece.window.dstPitch = dstPitch;
    piece.window.rows = static_cast<int>(rows.size());
    piece.window.cols = static_cast<int>(cols.size());
    piece.window.scale = scale;
    piece.window.dtype = ref.dtype;
    pieces.push_back(piece);
  };
  for (int layer = 0; layer < numLayers_; ++layer) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const std::optional<LoraPairSource>& pair = adapter.layers[static_cast<size_t>(layer)][static_cast<size_t>(t)];
      if (!pair) continue;
      const LoraTarget target = static_cast<LoraTarget>(t);
      const IndexRange wholeRank{0, adapter.rank};
      add(pair->aFile, pair->a, wholeRank, pair->aColumns, image + aOffset(layer, target), pair->aColumns.size(), 1.0f);
      // The scaling is folded into B before rounding, so the kernels need no per-slot scale.
      add(pair->bFile, pair->b, pair->bRows, wholeRank, image + bOffset(layer, target), maxRank_, adapter.scaling);
      ranks[static_cast<size_t>(layer * kNumLoraTargets + t)] = adapter.rank;
    }
  }
  copyAndConvert(pieces);
  publishRanks(slot, ranks);
}

template <typename T>
void AdapterSlots<T>::copyAndConvert(std::vector<Piece>& pieces) {
  // Bytes between two tensors that are copied along rather than starting a new copy.
  constexpr size_t kMaxGapBytes = 64 << 10;
  constexpr size_t kAlign = 256;
  const size_t capacity = staging_.bytes();
  std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) {
    return a.file != b.file ? a.file < b.file : a.begin < b.begin;
  });
  size_t used = 0;          // staging bytes taken by copies not converted yet
  size_t firstPending = 0;  // pieces [firstPending, i) are staged, not converted
  size_t tableAt = 0;       // each conversion takes its own part of the window table
  auto convertPending = [&](size_t end) {
    const size_t count = end - firstPending;
    if (count == 0) return;
    for (size_t k = 0; k < count; ++k) windowsHost_.data()[tableAt + k] = pieces[firstPending + k].window;
    checkCuda(cudaMemcpyAsync(windows_.data() + tableAt, windowsHost_.data() + tableAt,
                              count * sizeof(ConvertWindow<T>), cudaMemcpyHostToDevice, loadStream_),
              "cudaMemcpyAsync (conversion windows)");
    // Stream order: the next copy into the staging area waits for this conversion.
    convertWindows(windows_.data() + tableAt, static_cast<int>(count), loadStream_);
    tableAt += count;
    firstPending = end;
    used = 0;
  };
  for (size_t i = 0; i < pieces.size();) {
    // A run: the pieces of one file whose bytes follow each other (safetensors stores them back to back),
    // copied at once.
    const size_t runBegin = pieces[i].begin;
    size_t runEnd = pieces[i].end;
    size_t next = i + 1;
    while (next < pieces.size() && pieces[next].file == pieces[i].file &&
           pieces[next].begin <= runEnd + kMaxGapBytes && std::max(runEnd, pieces[next].end) - runBegin <= capacity) {
      runEnd = std::max(runEnd, pieces[next].end);
      ++next;
    }
    const size_t bytes = runEnd - runBegin;
    if (bytes > capacity) throw std::logic_error("adapter tensor larger than the staging area");
    if (used + bytes > capacity) convertPending(i);
    upload_->copy(staging_.data() + used, pieces[i].file->data() + runBegin, bytes);
    for (size_t k = i; k < next; ++k) {
      pieces[k].window.src = staging_.data() + used + (pieces[k].begin - runBegin) + pieces[k].firstColumnBytes;
    }
    used += (bytes + kAlign - 1) / kAlign * kAlign;
    i = next;
  }
  convertPending(pieces.size());
}

template <typename T>
void AdapterSlots<T>::unload(int slot) {
  std::lock_guard<std::mutex> lock(loadMutex_);
  publishRanks(slot, std::vector<int32_t>(static_cast<size_t>(numLayers_) * kNumLoraTargets, 0));
}

template <typename T>
void AdapterSlots<T>::publishRanks(int slot, const std::vector<int32_t>& ranks) {
  // Stream order puts the ranks after the weights; the synchronise makes both visible before the engine hands
  // the slot to a step.
  checkCuda(cudaMemcpyAsync(ranks_.data() + static_cast<size_t>(slot) * ranks.size(), ranks.data(),
                            ranks.size() * sizeof(int32_t), cudaMemcpyHostToDevice, loadStream_),
            "cudaMemcpyAsync (adapter ranks)");
  checkCuda(cudaStreamSynchronize(loadStream_), "cudaStreamSynchronize (adapter load)");
}

template <typename T>
LoraSlots<T> AdapterSlots<T>::view() const {
  return LoraSlots<T>{slotPointers_.data(), ranks_.data(), numLayers_, maxRank_};
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

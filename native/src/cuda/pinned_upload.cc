#include "pinned_upload.h"

#include <algorithm>
#include <cstring>

#include "cuda_check.h"

namespace loraserve::cuda {

namespace {

constexpr size_t kChunkBytes = 8u << 20;
constexpr int kChunks = 4;
// What one thread copies at a time: large enough to stream, small enough to balance the threads.
constexpr size_t kSliceBytes = 512u << 10;
// Host threads that fill a chunk: enough to keep up with the bus.
constexpr int kThreads = 8;

}  // namespace

PinnedUpload::PinnedUpload(cudaStream_t stream) : stream_(stream), threads_(kThreads) {
  for (int i = 0; i < kChunks; ++i) {
    chunks_.emplace_back(kChunkBytes);
    cudaEvent_t event = nullptr;
    checkCuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate (pinned upload)");
    sent_.push_back(event);
  }
}

PinnedUpload::~PinnedUpload() {
  for (cudaEvent_t event : sent_) cudaEventDestroy(event);
}

void PinnedUpload::copy(void* dst, const void* src, size_t bytes) {
  // Page-locked sources (the cuda backend's host tier) go straight to the DMA engine.
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, src) == cudaSuccess && attributes.type == cudaMemoryTypeHost) {
    checkCuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync (pinned source)");
    return;
  }
  const auto* from = static_cast<const unsigned char*>(src);
  auto* to = static_cast<unsigned char*>(dst);
  for (size_t offset = 0; offset < bytes; offset += kChunkBytes) {
    const size_t size = std::min(kChunkBytes, bytes - offset);
    const size_t k = next_++ % chunks_.size();
    unsigned char* chunk = chunks_[k].data();
    // The chunk's previous copy must have left it before it is filled again.
    checkCuda(cudaEventSynchronize(sent_[k]), "cudaEventSynchronize (pinned upload)");
    const int64_t slices = static_cast<int64_t>((size + kSliceBytes - 1) / kSliceBytes);
    threads_.parallelFor(slices, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        const size_t at = static_cast<size_t>(s) * kSliceBytes;
        std::memcpy(chunk + at, from + offset + at, std::min(kSliceBytes, size - at));
      }
    });
    checkCuda(cudaMemcpyAsync(to + offset, chunk, size, cudaMemcpyHostToDevice, stream_),
              "cudaMemcpyAsync (pinned upload)");
    checkCuda(cudaEventRecord(sent_[k], stream_), "cudaEventRecord (pinned upload)");
  }
}

}  // namespace loraserve::cuda

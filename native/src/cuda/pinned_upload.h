// Host-to-device copies from ordinary (pageable) host memory, such as an adapter's file mapping, at close to the
// pinned rate. A pageable cudaMemcpy runs far below the bus (6.2 GB/s measured on the H100 machine for an 84 MB
// adapter), and pinning the source for each load is itself slow. So the bytes go through a few pinned chunks:
// several threads fill the next chunk while the DMA engine sends the last one. Sources that are page-locked
// already (the host tier's buffers on cuda: NativeEngine.allocateHostBuffer) skip the chunks.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "../cpu/thread_pool.h"
#include "device_buffer.h"

namespace loraserve::cuda {

class PinnedUpload {
 public:
  explicit PinnedUpload(cudaStream_t stream);
  ~PinnedUpload();
  PinnedUpload(const PinnedUpload&) = delete;
  PinnedUpload& operator=(const PinnedUpload&) = delete;

  // Enqueues the copy of `bytes` from host `src` to device `dst` on the stream; it completes in stream order.
  // Page-locked `src` (cudaMallocHost) is copied from directly and must stay until the stream has passed the
  // copy; pageable `src` goes through the chunks and may be reused once this returns.
  void copy(void* dst, const void* src, size_t bytes);

 private:
  cudaStream_t stream_;
  ThreadPool threads_;
  std::vector<PinnedBuffer<unsigned char>> chunks_;
  std::vector<cudaEvent_t> sent_;  // per chunk: its last DMA has read it
  size_t next_ = 0;
};

}  // namespace loraserve::cuda

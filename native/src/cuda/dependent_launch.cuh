// Programmatic dependent launch (Hopper, PTX griddepcontrol): a step's kernels follow one another on one stream,
// and each is launched so that the GPU may schedule it while the kernel before it still runs. Its blocks then
// wait, before reading anything, until that kernel has finished and its writes are visible. In a one-row decode
// step, where most of the ~350 kernels run for a few microseconds, this hides the gap between them.
//
// Every block must pass the wait before it exits, also on an early return: a kernel whose blocks all returned
// without waiting could finish before its predecessor, and the next one would read unfinished data. Most
// kernels wait first (waitForPreviousKernel). One whose inputs are all older than its predecessor may start
// its work at once and wait last (the LoRA shrink beside the base product); one may read before the wait
// what no kernel of the step writes (the LoRA expand's adapter weights). Either way, a kernel starts only
// once its predecessor has passed its own wait, so everything before the predecessor is finished by then.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "cuda_check.h"

namespace loraserve::cuda {

// Waits until the stream's previous kernel has finished and its writes are visible (a no-op when there is none
// or it was launched plainly).
__device__ inline void awaitPreviousKernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the GPU schedule the next kernel while this one still runs.
__device__ inline void letNextKernelStart() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ inline void waitForPreviousKernel() {
  awaitPreviousKernel();
  letNextKernelStart();
}

// kernel<<<grid, block, sharedBytes, stream>>>(args...), allowed to start before the previous kernel ends.
template <typename... Params, typename... Args>
void launchDependent(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t sharedBytes,
                     cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = sharedBytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  checkCuda(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...), name);
}

}  // namespace loraserve::cuda

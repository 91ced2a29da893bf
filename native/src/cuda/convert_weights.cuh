// Weights stored as float32, float16 or bfloat16 become the backend's 16-bit type T on the device, after a raw
// copy of the stored bytes, so no float32 copy of the model or of an adapter is ever made on the host.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../tensor_ref.h"

namespace loraserve::cuda {

// src: count elements of `dtype` on the device (a type other than T's own: those are copied as they are).
// outOfRange: a device flag set to 1 when a finite value lies beyond T's range (float16's 65504), which the
// caller turns into an error naming the tensor; the value itself saturates.
template <typename T>
void convertTensor(const void* src, DType dtype, int64_t count, T* dst, int* outOfRange, cudaStream_t stream);

// A 2-D window of a stored tensor already copied to the device: rows x cols elements of `dtype`, the first at
// src and each row srcRowBytes after the one before (bytes: a tensor starts at any byte offset of its file),
// written as T(scale * value), saturating, with dstPitch elements between rows.
template <typename T>
struct ConvertWindow {
  const uint8_t* src = nullptr;
  int64_t srcRowBytes = 0;
  T* dst = nullptr;
  int64_t dstPitch = 0;
  int rows = 0;
  int cols = 0;
  float scale = 1.0f;
  DType dtype = DType::BF16;
};

// windows: `count` descriptors in device memory, converted in one launch.
template <typename T>
void convertWindows(const ConvertWindow<T>* windows, int count, cudaStream_t stream);

}  // namespace loraserve::cuda

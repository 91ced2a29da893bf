// Weights stored as float32, float16 or bfloat16 become the backend's 16-bit type T on the device, after a raw
// copy of the stored bytes, so no float32 copy of the model is ever made on the host.
#pragma once

#include <cuda_runtime.h>

#include "../tensor_ref.h"

namespace loraserve::cuda {

// src: count elements of `dtype` on the device (a type other than T's own: those are copied as they are).
// outOfRange: a device flag set to 1 when a finite value lies beyond T's range (float16's 65504), which the
// caller turns into an error naming the tensor; the value itself saturates.
template <typename T>
void convertTensor(const void* src, DType dtype, int64_t count, T* dst, int* outOfRange, cudaStream_t stream);

}  // namespace loraserve::cuda

// Weights stored as float32 or float16 become bf16 on the device, after a raw copy, so no float32 copy of the
// model is ever made on the host.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../tensor_ref.h"

namespace loraserve::cuda {

// src: count elements of `dtype` (F32 or F16) on the device.
void convertToBf16(const void* src, DType dtype, int64_t count, __nv_bfloat16* dst, cudaStream_t stream);

}  // namespace loraserve::cuda

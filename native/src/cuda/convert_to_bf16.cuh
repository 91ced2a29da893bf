// Weights stored as float32, float16 or bf16 become bf16 on the device, after a raw copy of the stored bytes, so
// no float32 copy of the model or of an adapter is ever made on the host.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../tensor_ref.h"

namespace loraserve::cuda {

// src: count elements of `dtype` (F32 or F16) on the device.
void convertToBf16(const void* src, DType dtype, int64_t count, __nv_bfloat16* dst, cudaStream_t stream);

// A 2-D window of a stored tensor already copied to the device: rows x cols elements of `dtype`, the first at
// src and each row srcRowBytes after the one before (bytes: a tensor starts at any byte offset of its file),
// written as bf16(scale * value) with dstPitch elements between rows.
struct ConvertWindow {
  const uint8_t* src = nullptr;
  int64_t srcRowBytes = 0;
  __nv_bfloat16* dst = nullptr;
  int64_t dstPitch = 0;
  int rows = 0;
  int cols = 0;
  float scale = 1.0f;
  DType dtype = DType::BF16;
};

// windows: `count` descriptors in device memory, converted in one launch.
void convertWindowsToBf16(const ConvertWindow* windows, int count, cudaStream_t stream);

}  // namespace loraserve::cuda

// The element types of safetensors tensors that the engine reads. This table is the only spelling of their
// names and codes: the addon exports it (contract.cc) and native/addon.ts reads it from there.
#pragma once

#include <array>
#include <cstddef>

namespace loraserve {

// The value of each is its code in a packed adapter (packed_adapter_layout.h) and its index in kDTypeNames.
enum class DType { F32 = 0, F16, BF16 };
constexpr int kNumDTypes = 3;

// safetensors' own names, as TensorRef.dtype carries them.
constexpr std::array<const char*, kNumDTypes> kDTypeNames = {"F32", "F16", "BF16"};

inline const char* dtypeName(DType dtype) { return kDTypeNames[static_cast<int>(dtype)]; }

inline size_t dtypeSize(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

}  // namespace loraserve

// One tensor-core instruction, mma.sync m16n8k16 with float32 accumulators, for float16 and bfloat16: the
// building block of every kernel here that multiplies tiles (prefill attention, the skinny products). One copy of
// the inline PTX and of its register layout, so the kernels agree on it.
#pragma once

#include <cstdint>
#include <type_traits>

#include "half_types.cuh"

namespace loraserve::cuda {

// D += A (16x16 T, row) * B (16x8 T, col), float32 accumulators. Fragment layout (PTX ISA, m16n8k16):
// lane = 4 * group + quad; A regs hold rows {group, group + 8} x cols {2 quad, 2 quad + 8} (+0/+1 packed),
// B regs hold k = {2 quad, 2 quad + 8} (+0/+1) of column group, C holds rows {group, group + 8} x cols 2 quad (+0/+1).
template <typename T>
__device__ inline void mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

}  // namespace loraserve::cuda

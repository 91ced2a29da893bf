// One tensor-core instruction, mma.sync m16n8k16 with float32 accumulators, for float16 and bfloat16: the
// building block of every kernel here that multiplies tiles (prefill and decode attention, the skinny products).
// One copy of the inline PTX and of its register layout, so the kernels agree on it.
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

// Four 8x8 matrices from shared memory, lanes 8m..8m+7 addressing the rows of matrix m; `.trans` transposes each.
template <bool kTranspose>
__device__ inline void loadMatrices(const void* rowStart, uint32_t* b) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(rowStart));
  if constexpr (kTranspose) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
                 : "r"(address));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
                 : "r"(address));
  }
}

// Two adjacent 16-bit values as one register.
template <typename T>
__device__ inline uint32_t load2(const T* p) { return *reinterpret_cast<const uint32_t*>(p); }

// The A fragments of a 16-row tile whose rows are contiguous vectors of kDim values (queries, say), one k-step of
// 16 per fragment: this lane's rows are row0 and row1 (group and group + 8), zeros for a row that is not valid.
template <int kDim, typename T>
__device__ inline void loadRowFragments(const T* row0, const T* row1, bool valid0, bool valid1, int quad,
                                        uint32_t (&frag)[kDim / 16][4]) {
#pragma unroll
  for (int ks = 0; ks < kDim / 16; ++ks) {
    const int col = ks * 16 + 2 * quad;
    frag[ks][0] = valid0 ? load2(row0 + col) : 0u;
    frag[ks][1] = valid1 ? load2(row1 + col) : 0u;
    frag[ks][2] = valid0 ? load2(row0 + col + 8) : 0u;
    frag[ks][3] = valid1 ? load2(row1 + col + 8) : 0u;
  }
}

}  // namespace loraserve::cuda

// Rotary position embedding applied in place, in transformers' "rotate half" layout: pair i of a head is
// (x[i], x[i + headDim/2]).
#pragma once

#include <cstdint>
#include <vector>

namespace loraserve {

// x is [rows, heads * headDim]; row r is at positions[r]. invFreq from ropeInverseFrequencies.
void applyRope(float* x, int64_t rows, int64_t heads, int64_t headDim, const int32_t* positions,
               const std::vector<float>& invFreq);

}  // namespace loraserve

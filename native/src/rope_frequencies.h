// Rotary embedding inverse frequencies after rope_scaling, as transformers' rope initialisers compute them.
// Backend-independent: each backend applies the rotation with these values.
#pragma once

#include <vector>

#include "model_spec.h"

namespace loraserve {

// One inverse frequency per rotated pair, headDim / 2 values. The angle of pair i at position p is
// p * inv_freq[i] (linear scaling is folded in as inv_freq / factor, which is the same as p / factor).
std::vector<float> ropeInverseFrequencies(const ModelSpec& spec);

}  // namespace loraserve

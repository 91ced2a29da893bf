// Llama's RMSNorm as transformers computes it: normalise in float32, then multiply by the weight.
#pragma once

#include <cstdint>

namespace loraserve {

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, for `rows` rows of `width`. out may alias x.
void rmsNorm(const float* x, int64_t rows, int64_t width, const float* weight, float eps, float* out);

}  // namespace loraserve

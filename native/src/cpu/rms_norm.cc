#include "rms_norm.h"

#include <cmath>

namespace loraserve {

void rmsNorm(const float* x, int64_t rows, int64_t width, const float* weight, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * width;
    float* dst = out + r * width;
    double sumSquares = 0.0;
    for (int64_t i = 0; i < width; ++i) sumSquares += static_cast<double>(in[i]) * in[i];
    const float variance = static_cast<float>(sumSquares / static_cast<double>(width));
    const float inverse = 1.0f / std::sqrt(variance + eps);
    for (int64_t i = 0; i < width; ++i) dst[i] = weight[i] * (in[i] * inverse);
  }
}

}  // namespace loraserve

#include "rope.h"

#include <cmath>

namespace loraserve {

void applyRope(float* x, int64_t rows, int64_t heads, int64_t headDim, const int32_t* positions,
               const std::vector<float>& invFreq) {
  const int64_t half = headDim / 2;
  std::vector<float> cosines(static_cast<size_t>(half));
  std::vector<float> sines(static_cast<size_t>(half));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < half; ++i) {
      // transformers forms the angle as a float32 product and takes cos/sin of it.
      const float angle = static_cast<float>(positions[r]) * invFreq[static_cast<size_t>(i)];
      cosines[static_cast<size_t>(i)] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sines[static_cast<size_t>(i)] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* head = x + (r * heads + h) * headDim;
      for (int64_t i = 0; i < half; ++i) {
        const float first = head[i];
        const float second = head[i + half];
        const float c = cosines[static_cast<size_t>(i)];
        const float s = sines[static_cast<size_t>(i)];
        head[i] = first * c - second * s;
        head[i + half] = second * c + first * s;
      }
    }
  }
}

}  // namespace loraserve

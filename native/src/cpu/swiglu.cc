#include "swiglu.h"

#include <cmath>

namespace loraserve {

void siluMultiply(float* gate, const float* up, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace loraserve

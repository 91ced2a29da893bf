// Llama's gated MLP activation: silu(gate) * up.
#pragma once

#include <cstdint>

namespace loraserve {

// gate[i] = silu(gate[i]) * up[i] for count elements.
void siluMultiply(float* gate, const float* up, int64_t count);

}  // namespace loraserve

// The seven projections a LoRA adapter may target, in the order of native/addon.ts LORA_TARGETS.
#pragma once

#include <array>

namespace loraserve {

enum class LoraTarget { Q = 0, K, V, O, Gate, Up, Down };
constexpr int kNumLoraTargets = 7;

constexpr std::array<const char*, kNumLoraTargets> kLoraTargetNames = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

inline const char* loraTargetName(LoraTarget target) { return kLoraTargetNames[static_cast<int>(target)]; }

}  // namespace loraserve

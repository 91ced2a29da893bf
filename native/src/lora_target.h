// The seven projections a LoRA adapter may target, in the engine's order. This table is the only spelling of
// their names and order: the addon exports it (contract.cc) and native/addon.ts reads it from there.
#pragma once

#include <array>

namespace loraserve {

enum class LoraTarget { Q = 0, K, V, O, Gate, Up, Down };
constexpr int kNumLoraTargets = 7;

// Indexed by LoraTarget: the index is also the target's code in a packed adapter (packed_adapter_layout.h).
constexpr std::array<const char*, kNumLoraTargets> kLoraTargetNames = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

inline const char* loraTargetName(LoraTarget target) { return kLoraTargetNames[static_cast<int>(target)]; }

}  // namespace loraserve

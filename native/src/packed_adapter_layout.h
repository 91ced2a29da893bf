// How AdapterWeights.pairs crosses into the addon: every pair's numbers in one Float64Array (a few N-API calls
// per load instead of several per tensor ref: 448 refs took 2.1 ms of a 5.9 ms load as objects). These tables
// are the only statement of the order: js_values.cc PackedPairs reads in it, the addon exports it
// (contract.cc) and native/addon.ts packAdapter writes in the order it reads there. The names are the
// properties of native/addon.ts LoraTensorPair and TensorRef that each number encodes.
#pragma once

#include <array>
#include <utility>

namespace loraserve {

// Per pair. Target: its index in kLoraTargetNames (lora_target.h). A and B: each a packed tensor ref.
enum class PackedPairField { Layer, Target, A, B };

constexpr std::array<std::pair<PackedPairField, const char*>, 4> kPackedPairLayout = {{
    {PackedPairField::Layer, "layer"},
    {PackedPairField::Target, "target"},
    {PackedPairField::A, "a"},
    {PackedPairField::B, "b"},
}};

// Per tensor ref. File: its index in AdapterWeights.files (each distinct name once). DType: its code
// (dtype.h). Shape: its length, then its dims.
enum class PackedTensorField { File, DType, Offset, Nbytes, Shape };

constexpr std::array<std::pair<PackedTensorField, const char*>, 5> kPackedTensorLayout = {{
    {PackedTensorField::File, "file"},
    {PackedTensorField::DType, "dtype"},
    {PackedTensorField::Offset, "offset"},
    {PackedTensorField::Nbytes, "nbytes"},
    {PackedTensorField::Shape, "shape"},
}};

}  // namespace loraserve

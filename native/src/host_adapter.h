// A LoRA adapter for one tensor-parallel rank: first checked against the base with its tensors left in their
// files (CheckedAdapter, what a backend loads from: a device backend copies the stored bytes as they are), then,
// for the CPU backend, read into float32 host memory (HostAdapter).
#pragma once

#include <array>
#include <optional>
#include <vector>

#include "adapter_refs.h"
#include "host_matrix.h"
#include "model_spec.h"
#include "safetensors_view.h"
#include "tensor_parallel.h"

namespace loraserve {

// One target's A and B in their files, and the window of each that this rank keeps: A keeps every rank row,
// B every rank column.
struct LoraPairSource {
  const MappedFile* aFile = nullptr;
  TensorRef a;          // [rank, in]
  IndexRange aColumns;  // this rank's input columns
  const MappedFile* bFile = nullptr;
  TensorRef b;        // [out, rank]
  IndexRange bRows;   // this rank's output rows
};

struct CheckedAdapter {
  int rank = 0;
  float scaling = 1.0f;
  // [layer][target]: empty where the adapter leaves that projection alone (targets or layers_to_transform).
  std::vector<std::array<std::optional<LoraPairSource>, kNumLoraTargets>> layers;
  // Keeps the files mapped (or the borrowed bytes viewed) that the pairs point into.
  MappedFiles files;
};

// Checks rank, layers, targets and every shape against the base (errors name the file); reads no tensor.
CheckedAdapter checkAdapter(const AdapterRefs& refs, const ModelSpec& spec, const ShardLayout& layout,
                            int maxLoraRank);

struct HostLoraPair {
  HostMatrix a;  // [rank, local in]
  HostMatrix b;  // [local out, rank]
};

struct HostAdapter {
  int rank = 0;
  float scaling = 1.0f;
  std::vector<std::array<std::optional<HostLoraPair>, kNumLoraTargets>> layers;
};

// This rank's windows of every pair, as float32.
HostAdapter readHostAdapter(const CheckedAdapter& adapter);

}  // namespace loraserve

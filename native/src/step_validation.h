// Checks a step's plan against the engine before anything runs, so bad input becomes an error message and
// never an out-of-bounds read or write.
#pragma once

#include <functional>
#include <vector>

#include "model_spec.h"
#include "step_io.h"

namespace loraserve {

struct StepLimits {
  const ModelSpec& spec;
  int numKvBlocks;
  int blockSize;
  int maxLoras;
  // Whether a slot holds a loaded adapter.
  std::function<bool(int)> slotReady;
  // For each entry of the step started just before this one, whether it draws a token (what previousResult may name).
  const std::vector<bool>& previousSampled;
};

// Throws std::invalid_argument naming the sequence (by index in the step) and what is wrong.
void validateStep(const std::vector<SeqStep>& seqs, const StepLimits& limits);

}  // namespace loraserve

// The model's hyper-parameters (native/addon.ts ModelSpec), already validated by shard/model/config.ts.
#pragma once

#include <cstdint>

namespace loraserve {

struct RopeScaling {
  enum class Type { None, Linear, Llama3 };
  Type type = Type::None;
  double factor = 1.0;
  // Only for Llama3.
  double lowFreqFactor = 1.0;
  double highFreqFactor = 1.0;
  double originalMaxPositionEmbeddings = 0.0;
};

struct ModelSpec {
  int64_t hiddenSize = 0;
  int64_t intermediateSize = 0;
  int numLayers = 0;
  int numHeads = 0;
  int numKvHeads = 0;
  int64_t headDim = 0;
  int64_t vocabSize = 0;
  double rmsNormEps = 1e-6;
  double ropeTheta = 10000.0;
  RopeScaling ropeScaling;
  int64_t maxPositionEmbeddings = 0;
};

}  // namespace loraserve

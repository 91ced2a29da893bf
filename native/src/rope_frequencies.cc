#include "rope_frequencies.h"

#include <cmath>

namespace loraserve {

namespace {

constexpr double kPi = 3.14159265358979323846;

// transformers' _compute_llama3_parameters: long wavelengths are slowed by `factor`, short ones kept, and the
// band between is interpolated smoothly.
double llama3Rescale(double invFreq, const RopeScaling& scaling) {
  const double oldContext = scaling.originalMaxPositionEmbeddings;
  const double lowFreqWavelen = oldContext / scaling.lowFreqFactor;
  const double highFreqWavelen = oldContext / scaling.highFreqFactor;
  const double wavelen = 2.0 * kPi / invFreq;
  if (wavelen > lowFreqWavelen) return invFreq / scaling.factor;
  if (wavelen < highFreqWavelen) return invFreq;
  const double smooth =
      (oldContext / wavelen - scaling.lowFreqFactor) / (scaling.highFreqFactor - scaling.lowFreqFactor);
  return (1.0 - smooth) * invFreq / scaling.factor + smooth * invFreq;
}

}  // namespace

std::vector<float> ropeInverseFrequencies(const ModelSpec& spec) {
  const int64_t pairs = spec.headDim / 2;
  std::vector<float> invFreq(static_cast<size_t>(pairs));
  for (int64_t i = 0; i < pairs; ++i) {
    double value = 1.0 / std::pow(spec.ropeTheta, static_cast<double>(2 * i) / static_cast<double>(spec.headDim));
    switch (spec.ropeScaling.type) {
      case RopeScaling::Type::None: break;
      case RopeScaling::Type::Linear: value /= spec.ropeScaling.factor; break;
      case RopeScaling::Type::Llama3: value = llama3Rescale(value, spec.ropeScaling); break;
    }
    // transformers keeps inv_freq in float32.
    invFreq[static_cast<size_t>(i)] = static_cast<float>(value);
  }
  return invFreq;
}

}  // namespace loraserve

#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "counter_rng.h"

namespace loraserve {

namespace {

// Orders token ids by logit, highest first, lower id first among equals: one total order for every cut. NaN
// (from broken weights) ranks last, so the order stays strict and sorting stays safe.
struct MoreLikely {
  const float* logits;
  static float key(float logit) { return std::isnan(logit) ? -INFINITY : logit; }
  bool operator()(int32_t a, int32_t b) const {
    const float ka = key(logits[a]);
    const float kb = key(logits[b]);
    return ka > kb || (ka == kb && a < b);
  }
};

std::vector<int32_t> allIds(int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  return ids;
}

// Sorts the shortest prefix of `ids` (in MoreLikely order) whose weight reaches `mass`, growing the sorted part
// geometrically: a nucleus is usually a few dozen tokens of a vocabulary of 10^5. Returns its length.
template <typename Weight>
size_t sortNucleus(std::vector<int32_t>& ids, const MoreLikely& moreLikely, const Weight& weight, double mass) {
  size_t sorted = std::min<size_t>(64, ids.size());
  for (;;) {
    std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(sorted), ids.end(), moreLikely);
    double kept = 0.0;
    for (size_t i = 0; i < sorted; ++i) {
      kept += weight(ids[i]);
      if (kept >= mass) return i + 1;
    }
    if (sorted == ids.size()) return sorted;
    sorted = std::min(ids.size(), sorted * 4);
  }
}

}  // namespace

double logSumExp(const float* logits, int64_t vocab) {
  const float maxLogit = *std::max_element(logits, logits + vocab);
  if (!std::isfinite(maxLogit)) return maxLogit;
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - maxLogit);
  return maxLogit + std::log(sum);
}

int32_t greedyToken(const float* logits, int64_t vocab) {
  // max_element returns the first of equal maxima: the lowest id.
  return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
}

int32_t sampleToken(const float* logits, int64_t vocab, const SamplingParams& params) {
  if (params.temperature == 0.0) return greedyToken(logits, vocab);
  std::vector<int32_t> candidates = allIds(vocab);
  const MoreLikely moreLikely{logits};
  if (params.topK > 0 && params.topK < vocab) {
    std::partial_sort(candidates.begin(), candidates.begin() + params.topK, candidates.end(), moreLikely);
    candidates.resize(static_cast<size_t>(params.topK));
  }
  float maxLogit = -INFINITY;
  for (int32_t id : candidates) maxLogit = std::max(maxLogit, MoreLikely::key(logits[id]));
  const auto weight = [&](int32_t id) {
    return std::exp((static_cast<double>(MoreLikely::key(logits[id])) - maxLogit) / params.temperature);
  };
  double total = 0.0;
  for (int32_t id : candidates) total += weight(id);
  if (params.topP < 1.0) {
    // Already sorted after a top-k cut; sortNucleus then only finds the length.
    candidates.resize(sortNucleus(candidates, moreLikely, weight, params.topP * total));
    total = 0.0;
    for (int32_t id : candidates) total += weight(id);
  }
  // The candidates' order is fixed by the logits alone, so the draw is reproducible.
  const double target = uniformDraw(params.seed, params.draw) * total;
  double cumulative = 0.0;
  for (int32_t id : candidates) {
    cumulative += weight(id);
    if (target < cumulative) return id;
  }
  return candidates.back();
}

void topLogprobs(const float* logits, int64_t vocab, double logSumExp, int n, std::vector<int32_t>& ids,
                 std::vector<float>& logprobs) {
  const int64_t count = std::min<int64_t>(n, vocab);
  std::vector<int32_t> order = allIds(vocab);
  std::partial_sort(order.begin(), order.begin() + count, order.end(), MoreLikely{logits});
  ids.assign(order.begin(), order.begin() + count);
  logprobs.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    logprobs[static_cast<size_t>(i)] = static_cast<float>(logits[ids[static_cast<size_t>(i)]] - logSumExp);
  }
}


LogitResult evaluateLogits(const float* logits, int64_t vocab, const LogitRequest& request) {
  LogitResult result;
  const double lse = logSumExp(logits, vocab);
  if (request.select) {
    result.token = sampleToken(logits, vocab, request.sampling);
    result.tokenLogprob = static_cast<float>(logits[result.token] - lse);
    if (request.topN > 0) topLogprobs(logits, vocab, lse, request.topN, result.topIds, result.topLogprobs);
  }
  if (request.target >= 0) result.targetLogprob = static_cast<float>(logits[request.target] - lse);
  if (request.returnLogits) result.logits.assign(logits, logits + vocab);
  return result;
}

}  // namespace loraserve

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

// transformers' TypicalLogitsWarper on the candidates, whose temperature-scaled logits `scaled` gives: keeps
// those whose surprise (-log p) is closest to the entropy, closest first, until their probability reaches
// `mass`, and every candidate as close as the last one kept. Removes the others, keeping the order.
template <typename Scaled>
void keepTypical(std::vector<int32_t>& candidates, const Scaled& scaled, double total, double mass,
                 const MoreLikely& moreLikely) {
  const double logTotal = std::log(total);
  double entropy = 0.0;
  std::vector<double> logProb(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    logProb[i] = scaled(candidates[i]) - logTotal;
    // A token of probability 0 adds nothing (torch's nansum skips its 0 * -inf).
    if (std::isfinite(logProb[i])) entropy -= std::exp(logProb[i]) * logProb[i];
  }
  std::vector<double> distance(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) distance[i] = std::abs(-logProb[i] - entropy);
  std::vector<size_t> order(candidates.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return distance[a] < distance[b] || (distance[a] == distance[b] && moreLikely(candidates[a], candidates[b]));
  });
  // The first position where the running probability reaches the mass (the last one when rounding keeps it
  // below), as transformers' count of cumulative < mass clamped to the last index.
  size_t last = 0;
  double cumulative = 0.0;
  for (; last + 1 < order.size(); ++last) {
    cumulative += std::exp(logProb[order[last]]);
    if (cumulative >= mass) break;
  }
  const double threshold = distance[order[last]];
  size_t kept = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (distance[i] <= threshold) candidates[kept++] = candidates[i];
  }
  candidates.resize(kept);
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

bool hasPenalties(const SamplingParams& params) {
  return params.repetitionPenalty != 1.0 || params.frequencyPenalty != 0.0 || params.presencePenalty != 0.0;
}

void applyPenalties(float* logits, const SamplingParams& params, const TokenHistory& history) {
  std::vector<int32_t> ids(history.ids, history.ids + history.size);
  // The generated part sorted, so that equal ids form runs: a run's length is the token's count.
  std::sort(ids.begin() + static_cast<std::ptrdiff_t>(history.promptLength), ids.end());
  if (params.repetitionPenalty != 1.0) {
    std::vector<int32_t> distinct = ids;
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    const float penalty = static_cast<float>(params.repetitionPenalty);
    for (int32_t id : distinct) logits[id] = logits[id] > 0.0f ? logits[id] / penalty : logits[id] * penalty;
  }
  if (params.frequencyPenalty == 0.0 && params.presencePenalty == 0.0) return;
  for (size_t i = history.promptLength; i < ids.size();) {
    size_t end = i;
    while (end < ids.size() && ids[end] == ids[i]) ++end;
    const double count = static_cast<double>(end - i);
    logits[ids[i]] -= static_cast<float>(params.frequencyPenalty * count + params.presencePenalty);
    i = end;
  }
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
  const auto scaled = [&](int32_t id) {
    return (static_cast<double>(MoreLikely::key(logits[id])) - maxLogit) / params.temperature;
  };
  const auto weight = [&](int32_t id) { return std::exp(scaled(id)); };
  const auto totalWeight = [&] {
    double total = 0.0;
    for (int32_t id : candidates) total += weight(id);
    return total;
  };
  double total = totalWeight();
  if (params.topP < 1.0) {
    // Already sorted after a top-k cut; sortNucleus then only finds the length.
    candidates.resize(sortNucleus(candidates, moreLikely, weight, params.topP * total));
    total = totalWeight();
  }
  if (params.typicalP < 1.0) {
    keepTypical(candidates, scaled, total, params.typicalP, moreLikely);
    total = totalWeight();
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
    if (hasPenalties(request.sampling)) {
      std::vector<float> penalised(logits, logits + vocab);
      applyPenalties(penalised.data(), request.sampling, request.history);
      result.token = sampleToken(penalised.data(), vocab, request.sampling);
    } else {
      result.token = sampleToken(logits, vocab, request.sampling);
    }
    result.tokenLogprob = static_cast<float>(logits[result.token] - lse);
    if (request.topN > 0) topLogprobs(logits, vocab, lse, request.topN, result.topIds, result.topLogprobs);
  }
  if (request.target >= 0) result.targetLogprob = static_cast<float>(logits[request.target] - lse);
  if (request.returnLogits) result.logits.assign(logits, logits + vocab);
  return result;
}

}  // namespace loraserve

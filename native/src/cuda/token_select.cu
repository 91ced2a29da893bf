#include <cmath>

#include "block_reduce.cuh"
#include "cuda_check.h"
#include "dependent_launch.cuh"
#include "token_select.cuh"

namespace loraserve::cuda {

namespace {

// One block per row; a decode step at batch 1 has one row of the whole vocabulary, so the block is as wide as
// can be and each thread keeps several loads in flight.
constexpr int kThreads = 1024;
constexpr int kDigits = 256;

// Larger key = earlier in the candidates' order: higher logit first, lower id first among equal logits.
__device__ inline uint64_t orderKey(float logit, int id) {
  uint32_t bits = __float_as_uint(logit);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(bits) << 32) | static_cast<uint32_t>(~static_cast<uint32_t>(id));
}

__device__ inline int keyId(uint64_t key) { return static_cast<int>(~static_cast<uint32_t>(key)); }

struct SharedState {
  double scratchD[32];
  unsigned long long scratchK[32];
  float scratchF[32];
  double weightHist[kDigits];
  unsigned int countHist[kDigits];
  double chunkSums[kThreads];
  uint64_t chosenPrefix;
  double remaining;
  int found;
};

// Sampling context of one row.
struct Row {
  const float* logits;
  int vocab;
  float maxLogit;
  double temperature;
  __device__ double weight(int i) const { return exp((static_cast<double>(logits[i]) - maxLogit) / temperature); }
};

// The largest key below `below` (strictly).
__device__ uint64_t maxKeyBelow(const Row& row, uint64_t below, SharedState& s) {
  unsigned long long best = 0;
#pragma unroll 4
  for (int i = threadIdx.x; i < row.vocab; i += blockDim.x) {
    const uint64_t key = orderKey(row.logits[i], i);
    if (key < below && key > best) best = key;
  }
  return blockMax<unsigned long long>(best, s.scratchK, 0ull);
}

__device__ double candidateWeight(const Row& row, uint64_t lowKey, SharedState& s) {
  double sum = 0.0;
  for (int i = threadIdx.x; i < row.vocab; i += blockDim.x) {
    if (orderKey(row.logits[i], i) >= lowKey) sum += row.weight(i);
  }
  return blockSum(sum, s.scratchD);
}

// Radix descent over the candidates (keys >= lowKey), most likely first. By count (byWeight false): the key
// of the `threshold`-th candidate. By weight: the key of the first candidate whose running weight reaches the
// threshold (> when strict, >= otherwise); past the total (rounding), the last candidate.
__device__ uint64_t descend(const Row& row, uint64_t lowKey, bool byWeight, double threshold, bool strict,
                            SharedState& s) {
  uint64_t prefix = 0, mask = 0;
  if (threadIdx.x == 0) s.remaining = threshold;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int d = threadIdx.x; d < kDigits; d += blockDim.x) {
      s.weightHist[d] = 0.0;
      s.countHist[d] = 0;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < row.vocab; i += blockDim.x) {
      const uint64_t key = orderKey(row.logits[i], i);
      if (key < lowKey || (key & mask) != prefix) continue;
      const int digit = static_cast<int>((key >> shift) & 0xff);
      atomicAdd(&s.countHist[digit], 1u);
      if (byWeight) atomicAdd(&s.weightHist[digit], row.weight(i));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      double before = 0.0;
      int chosen = -1, lastNonEmpty = -1;
      for (int d = kDigits - 1; d >= 0; --d) {
        if (s.countHist[d] == 0) continue;
        lastNonEmpty = d;
        const double here = byWeight ? s.weightHist[d] : static_cast<double>(s.countHist[d]);
        const double reach = before + here;
        if (strict ? reach > s.remaining : reach >= s.remaining) {
          chosen = d;
          break;
        }
        before = reach;
      }
      if (chosen < 0) {
        chosen = lastNonEmpty;
        s.remaining = INFINITY;  // keep taking the last candidate at every lower digit
      } else {
        s.remaining -= before;
      }
      s.chosenPrefix = prefix | (static_cast<uint64_t>(chosen) << shift);
    }
    __syncthreads();
    prefix = s.chosenPrefix;
    mask |= 0xffull << shift;
  }
  return prefix;
}

// The first id whose running weight in id order exceeds target (the CPU sampler's walk without a cut).
__device__ int walkInIdOrder(const Row& row, double target, SharedState& s) {
  const int chunk = (row.vocab + blockDim.x - 1) / blockDim.x;
  const int begin = threadIdx.x * chunk;
  const int end = min(row.vocab, begin + chunk);
  double sum = 0.0;
  for (int i = begin; i < end; ++i) sum += row.weight(i);
  s.chunkSums[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    int token = row.vocab - 1;
    double cumulative = 0.0;
    for (int t = 0; t < static_cast<int>(blockDim.x); ++t) {
      if (cumulative + s.chunkSums[t] > target) {
        for (int i = t * chunk; i < min(row.vocab, (t + 1) * chunk); ++i) {
          cumulative += row.weight(i);
          if (target < cumulative) {
            token = i;
            break;
          }
        }
        break;
      }
      cumulative += s.chunkSums[t];
    }
    s.found = token;
  }
  __syncthreads();
  return s.found;
}

__device__ int sampleToken(const Row& row, const TokenRequest& request, SharedState& s) {
  const bool topK = request.topK > 0 && request.topK < row.vocab;
  const bool topP = request.topP < 1.0;
  if (!topK && !topP) {
    const double total = candidateWeight(row, 0, s);
    return walkInIdOrder(row, request.uniform * total, s);
  }
  uint64_t lowKey = 0;
  if (topK) lowKey = descend(row, 0, false, static_cast<double>(request.topK), false, s);
  double total = candidateWeight(row, lowKey, s);
  if (topP) {
    lowKey = descend(row, lowKey, true, request.topP * total, false, s);
    total = candidateWeight(row, lowKey, s);
  }
  return keyId(descend(row, lowKey, true, request.uniform * total, true, s));
}

__global__ void __launch_bounds__(kThreads)
    selectTokensKernel(const float* logits, int vocab, const TokenRequest* requests, TokenResult* results) {
  waitForPreviousKernel();
  __shared__ SharedState s;
  const TokenRequest request = requests[blockIdx.x];
  Row row{logits + static_cast<int64_t>(blockIdx.x) * vocab, vocab, 0.0f, request.temperature};
  float localMax = -INFINITY;
#pragma unroll 4
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) localMax = fmaxf(localMax, row.logits[i]);
  row.maxLogit = blockMax(localMax, s.scratchF, -INFINITY);
  double sum = 0.0;
  // float exponentials (the terms are at most 1), summed in double: within 1e-6 of the CPU's double sum at a
  // tenth of the cost, which every decode step pays on the whole vocabulary.
#pragma unroll 4
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) sum += expf(row.logits[i] - row.maxLogit);
  const double logSumExp = row.maxLogit + log(blockSum(sum, s.scratchD));

  TokenResult& result = results[blockIdx.x];
  if (request.draw) {
    const int token = request.temperature == 0.0 ? keyId(maxKeyBelow(row, ~0ull, s)) : sampleToken(row, request, s);
    uint64_t previous = ~0ull;
    for (int n = 0; n < request.topN; ++n) {
      previous = maxKeyBelow(row, previous, s);
      if (threadIdx.x == 0) {
        const int id = keyId(previous);
        result.topIds[n] = id;
        result.topLogprobs[n] = static_cast<float>(row.logits[id] - logSumExp);
      }
    }
    if (threadIdx.x == 0) {
      result.token = token;
      result.tokenLogprob = static_cast<float>(row.logits[token] - logSumExp);
      result.numTop = request.topN;
    }
  } else if (threadIdx.x == 0) {
    result.token = -1;
    result.numTop = 0;
  }
  if (threadIdx.x == 0) {
    result.targetLogprob =
        request.target >= 0 ? static_cast<float>(row.logits[request.target] - logSumExp) : __int_as_float(0x7fc00000);
  }
}

}  // namespace

void selectTokens(const float* logits, int rows, int vocab, const TokenRequest* requests, TokenResult* results,
                  cudaStream_t stream) {
  if (rows == 0) return;
  launchDependent("selectTokensKernel", selectTokensKernel, rows, kThreads, 0, stream, logits, vocab, requests, results);
}

}  // namespace loraserve::cuda

// cuda::selectTokens against the CPU sampler's evaluateLogits(): token, top-n ids and their count exactly equal;
// token, target and top-n logprobs within 1e-4 (float32 throughout).
#include "../src/counter_rng.h"
#include "../src/cuda/token_select.cuh"
#include "../src/sampler.h"
#include "check_common.cuh"

namespace loraserve::check {
namespace {

void checkVocab(int vocab) {
  struct Case {
    const char* name;
    double temperature;
    int64_t topK;
    double topP;
    int topN;
  };
  const std::vector<Case> cases = {{"greedy", 0, 0, 1, 5},      {"temperature 0.8", 0.8, 0, 1, 0},
                                   {"top-k 40", 1.0, 40, 1, 3}, {"top-p 0.9", 0.7, 0, 0.9, 0},
                                   {"top-k 50 + top-p 0.8", 1.2, 50, 0.8, 2}, {"top-k 1", 1.0, 1, 1, 0}};
  for (const Case& c : cases) {
    const int rows = 48;
    std::vector<float> logits = randomFloats(static_cast<size_t>(rows) * vocab, 2.0f);
    // Equal logits in some rows test the lowest-id-first order.
    for (int i = 0; i < 8; ++i) logits[static_cast<size_t>(vocab) + static_cast<size_t>(i) * 3] = 9.0f;
    std::vector<cuda::TokenRequest> requests(rows);
    std::vector<LogitRequest> cpuRequests(rows);
    for (int r = 0; r < rows; ++r) {
      LogitRequest& cpu = cpuRequests[static_cast<size_t>(r)];
      cpu.row = r;
      cpu.select = true;
      cpu.sampling = {c.temperature, c.topK, c.topP, static_cast<uint64_t>(1000 + r), static_cast<uint64_t>(r * 7)};
      cpu.topN = c.topN;
      cpu.target = (r * 37) % vocab;
      cuda::TokenRequest& gpu = requests[static_cast<size_t>(r)];
      gpu.draw = 1;
      gpu.temperature = c.temperature;
      gpu.topK = c.topK;
      gpu.topP = c.topP;
      gpu.uniform = uniformDraw(cpu.sampling.seed, cpu.sampling.draw);
      gpu.topN = c.topN;
      gpu.target = cpu.target;
    }
    auto dlogits = toDevice(logits);
    auto drequests = toDevice(requests);
    auto dresults = poisoned<cuda::TokenResult>(rows);
    cuda::selectTokens(dlogits.data(), rows, vocab, drequests.data(), dresults.data(), nullptr);
    const std::vector<cuda::TokenResult> results = toHost(dresults);
    std::vector<int64_t> idsOurs, idsRef;
    std::vector<std::string> idLabels;
    std::vector<float> lpOurs, lpRef;
    for (int r = 0; r < rows; ++r) {
      const LogitResult expected = evaluateLogits(logits.data() + static_cast<size_t>(r) * vocab, vocab, cpuRequests[static_cast<size_t>(r)]);
      const cuda::TokenResult& ours = results[static_cast<size_t>(r)];
      const std::string row = "row " + std::to_string(r);
      idsOurs.push_back(ours.token), idsRef.push_back(expected.token), idLabels.push_back(row + " token");
      idsOurs.push_back(ours.numTop), idsRef.push_back(static_cast<int64_t>(expected.topIds.size())), idLabels.push_back(row + " numTop");
      lpOurs.push_back(ours.tokenLogprob), lpRef.push_back(static_cast<float>(expected.tokenLogprob));
      lpOurs.push_back(ours.targetLogprob), lpRef.push_back(static_cast<float>(expected.targetLogprob));
      for (size_t n = 0; n < expected.topIds.size(); ++n) {
        const bool have = n < static_cast<size_t>(ours.numTop);
        idsOurs.push_back(have ? ours.topIds[n] : -1), idsRef.push_back(expected.topIds[n]);
        idLabels.push_back(row + " top " + std::to_string(n));
        lpOurs.push_back(have ? ours.topLogprobs[n] : NAN), lpRef.push_back(static_cast<float>(expected.topLogprobs[n]));
      }
    }
    const std::string what = std::string("token select ") + c.name + " vocab " + std::to_string(vocab);
    compareIds(what + ": ids", idsOurs, idsRef, idLabels);
    compare(what + ": logprobs", lpOurs, lpRef, {1e-4, 0.0}, {}, "float32");
  }
}

}  // namespace

void checkTokenSelect() {
  checkVocab(512);
  checkVocab(128256);
}

}  // namespace loraserve::check

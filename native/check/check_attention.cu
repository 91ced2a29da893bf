// cuda::decodeAttention and cuda::prefillAttention against the CPU pagedAttention() over the same paged cache
// (T-exact random K/V, scrambled block ids): GQA 4/2/1, block sizes 4/5/16, head_dim 16-128, 1-7 splits,
// chunked prefill. q in T, output in T.
#include <memory>
#include <numeric>

#include "../src/cpu/kv_cache.h"
#include "../src/cpu/paged_attention.h"
#include "../src/cpu/thread_pool.h"
#include "../src/cuda/decode_attention.cuh"
#include "../src/cuda/prefill_attention.cuh"
#include "../src/cuda/step_plan.h"
#include "check_common.cuh"

namespace loraserve::check {
namespace {


// A paged cache holding random (T-exact) K/V for several sequences, on both sides, with scrambled block ids.
template <typename T>
struct CacheFixture {
  int blockSize, numBlocks, heads, kvHeads, d;
  std::vector<int> lengths;
  std::vector<std::vector<int32_t>> tables;
  std::unique_ptr<KvCache> cpu;
  cuda::DeviceBuffer<T> k, v;

  CacheFixture(int blockSize, int heads, int kvHeads, int d, std::vector<int> lengths)
      : blockSize(blockSize), heads(heads), kvHeads(kvHeads), d(d), lengths(std::move(lengths)) {
    int blocks = 0;
    for (int len : this->lengths) blocks += (len + blockSize - 1) / blockSize;
    numBlocks = blocks + 3;
    std::vector<int32_t> ids(numBlocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    int next = 0;
    for (int len : this->lengths) {
      tables.emplace_back(ids.begin() + next, ids.begin() + next + (len + blockSize - 1) / blockSize);
      next += static_cast<int>(tables.back().size());
    }
    cpu = std::make_unique<KvCache>(1, numBlocks, blockSize, kvHeads, d);
    const size_t rowWidth = static_cast<size_t>(kvHeads) * d;
    std::vector<float> kHost(static_cast<size_t>(numBlocks) * blockSize * rowWidth, 0.0f), vHost(kHost.size(), 0.0f);
    for (size_t s = 0; s < this->lengths.size(); ++s) {
      const int len = this->lengths[s];
      ForwardBatch batch;
      BatchSegment segment;
      segment.numRows = len;
      segment.blockTable = tables[s].data();
      batch.segments.push_back(segment);
      for (int p = 0; p < len; ++p) {
        batch.tokens.push_back(0);
        batch.positions.push_back(p);
      }
      const std::vector<float> keys = exactIn<T>(randomFloats(static_cast<size_t>(len) * rowWidth));
      const std::vector<float> values = exactIn<T>(randomFloats(static_cast<size_t>(len) * rowWidth));
      cpu->write(0, batch, keys.data(), values.data());
      for (int p = 0; p < len; ++p) {
        const size_t slot = static_cast<size_t>(cpu->slotOf(tables[s].data(), p));
        std::copy_n(keys.begin() + p * rowWidth, rowWidth, kHost.begin() + slot * rowWidth);
        std::copy_n(values.begin() + p * rowWidth, rowWidth, vHost.begin() + slot * rowWidth);
      }
    }
    k = toDevice(narrow<T>(kHost));
    v = toDevice(narrow<T>(vHost));
  }
};

// Queries `rows[s]` consecutive positions of sequence s ending at its last cached position, through the
// decode kernel (one row per sequence) or the prefill kernel.
template <typename T>
void checkAttention(const std::string& name, CacheFixture<T>& cache, const std::vector<int>& rowsPerSeq, int splits) {
  ForwardBatch batch;
  for (size_t s = 0; s < cache.lengths.size(); ++s) {
    BatchSegment segment;
    segment.firstRow = static_cast<int64_t>(batch.tokens.size());
    segment.numRows = rowsPerSeq[s];
    segment.startPos = cache.lengths[s] - rowsPerSeq[s];
    segment.blockTable = cache.tables[s].data();
    batch.segments.push_back(segment);
    for (int i = 0; i < rowsPerSeq[s]; ++i) {
      batch.tokens.push_back(0);
      batch.positions.push_back(static_cast<int32_t>(segment.startPos + i));
    }
  }
  const int rows = static_cast<int>(batch.tokens.size());
  const std::vector<float> q = exactIn<T>(randomFloats(static_cast<size_t>(rows) * cache.heads * cache.d));
  std::vector<float> expected(q.size());
  ThreadPool pool(2);
  pagedAttention(batch, 0, q.data(), *cache.cpu, {cache.heads, cache.kvHeads, cache.d}, pool, expected.data());

  const cuda::StepPlan plan = cuda::planStep(batch, cache.blockSize);
  auto tables = toDevice(plan.blockTables);
  cuda::PagedKv<T> kv{cache.k.data(), cache.v.data(), tables.data(), cache.blockSize, cache.heads, cache.kvHeads, cache.d};
  auto dq = toDevice(narrow<T>(q));
  auto out = poisoned<T>(q.size());
  if (!plan.decodeItems.empty()) {
    auto items = toDevice(plan.decodeItems);
    cuda::DeviceBuffer<float> scratch(static_cast<size_t>(cuda::decodeAttentionScratchFloats(static_cast<int>(plan.decodeItems.size()), cache.heads, cache.d, splits)));
    cuda::decodeAttention(dq.data(), kv, items.data(), static_cast<int>(plan.decodeItems.size()), splits, scratch.data(), out.data(), nullptr);
  }
  if (!plan.prefillTiles.empty()) {
    auto tiles = toDevice(plan.prefillTiles);
    cuda::prefillAttention(dq.data(), kv, tiles.data(), static_cast<int>(plan.prefillTiles.size()), out.data(), nullptr);
  }
  compare(tagged<T>(name), widen(toHost(out)), expected, tolerance<T>(), {rows, cache.heads, cache.d});
}

template <typename T>
void checkAll() {
  // Decode: GQA 16, 8, 4, 2 and 1, block sizes 16 and 5, head dims 128 / 64 / 32 / 16, one split and several
  // (more splits than a short sequence has keys: empty splits), lengths off the 16-key tiles.
  {
    CacheFixture<T> cache(16, 32, 4, 128, {2, 33, 513});
    checkAttention<T>("decode attention d128 gqa8 block16 splits32", cache, {1, 1, 1}, 32);
    checkAttention<T>("decode attention d128 gqa8 block16 splits1", cache, {1, 1, 1}, 1);
  }
  {
    CacheFixture<T> cache(16, 32, 2, 64, {5, 100});
    checkAttention<T>("decode attention d64 gqa16 block16 splits4", cache, {1, 1}, 4);
  }
  {
    CacheFixture<T> cache(16, 32, 8, 128, {1, 17, 300, 1000});
    checkAttention<T>("decode attention d128 gqa4 block16 splits1", cache, {1, 1, 1, 1}, 1);
    checkAttention<T>("decode attention d128 gqa4 block16 splits7", cache, {1, 1, 1, 1}, 7);
    checkAttention<T>("prefill attention d128 gqa4 block16 (chunked)", cache, {1, 17, 130, 64}, 1);
  }
  {
    CacheFixture<T> cache(5, 4, 4, 64, {3, 64, 200});
    checkAttention<T>("decode attention d64 mha block5 splits3", cache, {1, 1, 1}, 3);
    checkAttention<T>("prefill attention d64 mha block5 (whole prompts)", cache, {3, 64, 200}, 1);
  }
  {
    CacheFixture<T> cache(4, 4, 2, 32, {7, 40});
    checkAttention<T>("decode attention d32 gqa2 block4", cache, {1, 1}, 2);
    checkAttention<T>("prefill attention d32 gqa2 block4", cache, {7, 33}, 1);
  }
  {
    CacheFixture<T> cache(4, 4, 4, 16, {9, 21});
    checkAttention<T>("decode attention d16 block4", cache, {1, 1}, 1);
    checkAttention<T>("prefill attention d16 block4", cache, {5, 21}, 1);
  }
}

}  // namespace

void checkAttention() {
  checkAll<__half>();
  checkAll<__nv_bfloat16>();
}

}  // namespace loraserve::check

// Every CUDA kernel against the CPU backend's function of the same job (the spec), on fresh random inputs:
//   native/build/Release/loraserve_kernel_checks    (built with the addon when CUDA is found)
// Prints one line per case with ‖gpu − cpu‖ / ‖cpu‖ (or the count of differing ids) and exits 1 on a failure.
// Every kernel that handles 16-bit data runs once per type the backend can use (float16, bfloat16), its lines
// tagged with the type. Rounding of what feeds the next step to 16 bits bounds the tolerances: float32 against
// float32 lands far lower.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../src/cpu/gemm.h"
#include "../src/cpu/kv_cache.h"
#include "../src/cpu/lora.h"
#include "../src/cpu/paged_attention.h"
#include "../src/cpu/rms_norm.h"
#include "../src/cpu/rope.h"
#include "../src/cpu/swiglu.h"
#include "../src/cpu/thread_pool.h"
#include "../src/counter_rng.h"
#include "../src/cuda/adapter_slots.h"
#include "../src/cuda/decode_attention.cuh"
#include "../src/cuda/device_buffer.h"
#include "../src/cuda/gemm.h"
#include "../src/cuda/half_types.cuh"
#include "../src/cuda/lora_shrink_expand.cuh"
#include "../src/cuda/prefill_attention.cuh"
#include "../src/cuda/rmsnorm.cuh"
#include "../src/cuda/rope_kv_write.cuh"
#include "../src/cuda/silu_mul.cuh"
#include "../src/cuda/step_plan.h"
#include "../src/cuda/token_select.cuh"
#include "../src/rope_frequencies.h"
#include "../src/sampler.h"

using namespace loraserve;
using cuda::checkCuda;
using cuda::HalfType;

namespace {

std::mt19937 rng(20261125);
int failures = 0;

void report(const std::string& what, double error, double tolerance, const char* unit = "rel err") {
  const bool ok = std::isfinite(error) && error <= tolerance;
  if (!ok) ++failures;
  std::printf("%-58s %s %.3e (tolerance %.1e) %s\n", what.c_str(), unit, error, tolerance, ok ? "ok" : "FAIL");
}

std::vector<float> randomFloats(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

template <typename T>
std::string tagged(const std::string& what) {
  return std::string(HalfType<T>::kName) + " " + what;
}

// Rounds through T, so the CPU reference sees exactly what the GPU reads.
template <typename T>
std::vector<float> exactIn(std::vector<float> v) {
  for (float& x : v) x = cuda::toFloat(cuda::fromFloat<T>(x));
  return v;
}

template <typename T>
std::vector<T> narrow(const std::vector<float>& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = cuda::fromFloat<T>(v[i]);
  return out;
}

template <typename T>
std::vector<float> widen(const std::vector<T>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = cuda::toFloat(v[i]);
  return out;
}

template <typename T>
cuda::DeviceBuffer<T> toDevice(const std::vector<T>& host) {
  cuda::DeviceBuffer<T> device(host.size());
  checkCuda(cudaMemcpy(device.data(), host.data(), device.bytes(), cudaMemcpyHostToDevice), "upload");
  return device;
}

// Unwritten outputs show up as NaN instead of passing by luck.
template <typename T>
cuda::DeviceBuffer<T> poisoned(size_t count) {
  cuda::DeviceBuffer<T> device(count);
  checkCuda(cudaMemset(device.data(), 0xff, device.bytes()), "poison");
  return device;
}

template <typename T>
std::vector<T> toHost(const cuda::DeviceBuffer<T>& device) {
  checkCuda(cudaDeviceSynchronize(), "kernel");
  std::vector<T> host(device.size());
  checkCuda(cudaMemcpy(host.data(), device.data(), device.bytes(), cudaMemcpyDeviceToHost), "download");
  return host;
}

double relativeError(const std::vector<float>& ours, const std::vector<float>& reference) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < reference.size(); ++i) {
    if (!std::isfinite(ours[i])) return NAN;
    diff += (ours[i] - static_cast<double>(reference[i])) * (ours[i] - static_cast<double>(reference[i]));
    norm += static_cast<double>(reference[i]) * reference[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

// One-row products take the matrix-vector kernel, the others cuBLAS; beta 1 is the residual add.
template <typename T>
void checkLinear(cuda::Gemm& gemm, int rows, int in, int out, float beta) {
  const std::vector<float> x = exactIn<T>(randomFloats(static_cast<size_t>(rows) * in));
  const std::vector<float> w = exactIn<T>(randomFloats(static_cast<size_t>(out) * in, 0.05f));
  const std::vector<float> y = randomFloats(static_cast<size_t>(rows) * out);
  std::vector<float> expected = y;
  linear(x.data(), rows, in, w.data(), out, expected.data(), 1.0f, beta);
  auto dx = toDevice(narrow<T>(x));
  auto dw = toDevice(narrow<T>(w));
  auto dy = toDevice(y);
  if (beta == 0.0f) checkCuda(cudaMemset(dy.data(), 0xff, dy.bytes()), "poison");
  gemm.linear(dx.data(), rows, in, dw.data(), out, dy.data(), out, beta);
  report(tagged<T>("linear rows " + std::to_string(rows) + " in " + std::to_string(in) + " out " + std::to_string(out) +
             " beta " + std::to_string(static_cast<int>(beta))),
         relativeError(toHost(dy), expected), 1e-4);
}

template <typename T>
void checkRmsNorm(int rows, int dim) {
  const std::vector<float> x = randomFloats(static_cast<size_t>(rows) * dim, 3.0f);
  const std::vector<float> weight = exactIn<T>(randomFloats(dim));
  std::vector<float> expected(x.size());
  rmsNorm(x.data(), rows, dim, weight.data(), 1e-5f, expected.data());
  auto dx = toDevice(x);
  auto dw = toDevice(narrow<T>(weight));
  auto out = poisoned<T>(x.size());
  cuda::rmsNorm(dx.data(), nullptr, dw.data(), out.data(), rows, dim, 1e-5f, nullptr);
  report(tagged<T>("rmsnorm rows " + std::to_string(rows) + " dim " + std::to_string(dim)), relativeError(widen(toHost(out)), expected),
         1e-2);
  // The final norm gathers the rows that need logits.
  const std::vector<int32_t> pick = {rows - 1, 0};
  auto dpick = toDevice(pick);
  auto gathered = poisoned<T>(2 * static_cast<size_t>(dim));
  cuda::rmsNorm(dx.data(), dpick.data(), dw.data(), gathered.data(), 2, dim, 1e-5f, nullptr);
  std::vector<float> expectedPick(expected.begin() + static_cast<size_t>(rows - 1) * dim, expected.begin() + static_cast<size_t>(rows) * dim);
  expectedPick.insert(expectedPick.end(), expected.begin(), expected.begin() + dim);
  report(tagged<T>("rmsnorm gathered rows"), relativeError(widen(toHost(gathered)), expectedPick), 1e-2);
}

template <typename T>
void checkRope(const std::string& name, const ModelSpec& spec) {
  const int rows = 9, heads = spec.numHeads, kvHeads = spec.numKvHeads, d = static_cast<int>(spec.headDim);
  const int width = (heads + 2 * kvHeads) * d;
  const std::vector<float> qkv = randomFloats(static_cast<size_t>(rows) * width);
  std::vector<int32_t> positions(rows);
  std::uniform_int_distribution<int> pos(0, 120000);
  for (int32_t& p : positions) p = pos(rng);
  positions[0] = 0;
  std::vector<int32_t> slots(rows);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  const std::vector<float> invFreq = ropeInverseFrequencies(spec);
  std::vector<float> q(static_cast<size_t>(rows) * heads * d), k(static_cast<size_t>(rows) * kvHeads * d), v(k.size());
  for (int r = 0; r < rows; ++r) {
    const float* in = qkv.data() + static_cast<size_t>(r) * width;
    std::copy_n(in, heads * d, q.begin() + static_cast<size_t>(r) * heads * d);
    std::copy_n(in + heads * d, kvHeads * d, k.begin() + static_cast<size_t>(r) * kvHeads * d);
    std::copy_n(in + (heads + kvHeads) * d, kvHeads * d, v.begin() + static_cast<size_t>(r) * kvHeads * d);
  }
  applyRope(q.data(), rows, heads, d, positions.data(), invFreq);
  applyRope(k.data(), rows, kvHeads, d, positions.data(), invFreq);
  // The cache rows in the order the kernel writes them.
  std::vector<float> kExpected(k.size()), vExpected(v.size());
  for (int r = 0; r < rows; ++r) {
    std::copy_n(k.begin() + static_cast<size_t>(r) * kvHeads * d, kvHeads * d, kExpected.begin() + static_cast<size_t>(slots[r]) * kvHeads * d);
    std::copy_n(v.begin() + static_cast<size_t>(r) * kvHeads * d, kvHeads * d, vExpected.begin() + static_cast<size_t>(slots[r]) * kvHeads * d);
  }
  auto dqkv = toDevice(qkv);
  auto dpos = toDevice(positions);
  auto dslots = toDevice(slots);
  auto dfreq = toDevice(invFreq);
  auto dq = poisoned<T>(q.size());
  auto dk = poisoned<T>(k.size());
  auto dv = poisoned<T>(v.size());
  cuda::ropeAndWriteKv(dqkv.data(), dpos.data(), dslots.data(), dfreq.data(), dq.data(), dk.data(), dv.data(), rows,
                       {heads, kvHeads, d}, nullptr);
  report(tagged<T>("rope " + name + ": q"), relativeError(widen(toHost(dq)), q), 1e-2);
  report(tagged<T>("rope " + name + ": k in the cache"), relativeError(widen(toHost(dk)), kExpected), 1e-2);
  report(tagged<T>("rope " + name + ": v in the cache"), relativeError(widen(toHost(dv)), vExpected), 1e-2);
}

template <typename T>
void checkSiluMul(int rows, int width) {
  const std::vector<float> gateUp = randomFloats(static_cast<size_t>(rows) * 2 * width, 2.0f);
  std::vector<float> gate(static_cast<size_t>(rows) * width), up(gate.size());
  for (int r = 0; r < rows; ++r) {
    std::copy_n(gateUp.begin() + static_cast<size_t>(r) * 2 * width, width, gate.begin() + static_cast<size_t>(r) * width);
    std::copy_n(gateUp.begin() + static_cast<size_t>(r) * 2 * width + width, width, up.begin() + static_cast<size_t>(r) * width);
  }
  siluMultiply(gate.data(), up.data(), static_cast<int64_t>(gate.size()));
  auto din = toDevice(gateUp);
  auto out = poisoned<T>(gate.size());
  cuda::siluAndMul(din.data(), out.data(), rows, width, nullptr);
  report(tagged<T>("silu_mul rows " + std::to_string(rows) + " width " + std::to_string(width)), relativeError(widen(toHost(out)), gate), 1e-2);
}

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
  report(tagged<T>(name), relativeError(widen(toHost(out)), expected), 1e-2);
}

template <typename T>
void checkAttentionSuite() {
  // Decode: GQA 4 and 1, block sizes 16 and 5, head dims 128 / 64 / 32 / 16, one split and several.
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

// Mixed adapters: ranks 4/16/8, targets left out, rows without an adapter; `segments` are (slot, rows) pairs:
// prefill-sized and decode segments together, or decode rows alone (the kernels' one-row form).
template <typename T>
void checkLora(const std::string& shape, const std::vector<std::pair<int, int>>& segments) {
  ModelSpec spec;
  spec.hiddenSize = 256;
  spec.intermediateSize = 512;
  spec.numLayers = 2;
  spec.numHeads = 8;
  spec.numKvHeads = 2;
  spec.headDim = 32;
  spec.vocabSize = 64;
  const ShardLayout layout(spec, 0, 1);
  const int maxRank = 16;
  const std::vector<int> ranks = {4, 16, 8};
  // Each adapter stored in another dtype, so the slot load's conversions are all checked.
  const std::vector<DType> dtypes = {DType::F32, DType::BF16, DType::F16};
  cuda::AdapterSlots<T> slots(spec, layout, static_cast<int>(ranks.size()), maxRank);
  std::vector<std::shared_ptr<const HostAdapter>> adapters(ranks.size());
  std::vector<std::vector<uint8_t>> files(ranks.size());
  for (size_t s = 0; s < ranks.size(); ++s) {
    AdapterRefs refs;
    refs.rank = ranks[s];
    refs.scaling = 0.5 + static_cast<double>(s);
    const std::string name = "adapter-" + std::to_string(s) + ".safetensors";
    std::vector<uint8_t>& bytes = files[s];
    bytes.assign(3, 0);  // an odd header length: tensors start at unaligned offsets, as they may in real files
    auto store = [&](int64_t rows, int64_t cols) {
      TensorRef ref{name, dtypes[s], {rows, cols}, bytes.size(), 0};
      for (float value : randomFloats(static_cast<size_t>(rows * cols), 0.1f)) {
        uint8_t raw[4];
        if (ref.dtype == DType::F32) {
          std::memcpy(raw, &value, 4);
        } else {
          const uint16_t bits = ref.dtype == DType::BF16 ? __nv_bfloat16_raw(__float2bfloat16(value)).x
                                                         : __half_raw(__float2half(value)).x;
          std::memcpy(raw, &bits, 2);
        }
        bytes.insert(bytes.end(), raw, raw + dtypeSize(ref.dtype));
      }
      ref.nbytes = bytes.size() - ref.offset;
      return ref;
    };
    for (int layer = 0; layer < spec.numLayers; ++layer) {
      for (int t = 0; t < kNumLoraTargets; ++t) {
        if ((t + layer + static_cast<int>(s)) % 3 == 0) continue;  // this adapter leaves the target alone
        const TargetShape shape = layout.localShape(static_cast<LoraTarget>(t));
        LoraPairRef pair;
        pair.layer = layer;
        pair.target = static_cast<LoraTarget>(t);
        pair.a = store(refs.rank, shape.in);
        pair.b = store(shape.out, refs.rank);
        refs.pairs.push_back(pair);
      }
    }
    refs.fileBytes[name] = BorrowedBytes{bytes.data(), bytes.size()};
    const CheckedAdapter checked = checkAdapter(refs, spec, layout, maxRank);
    slots.load(static_cast<int>(s), checked);
    // The reference reads the stored values exactly; the slot holds them rounded to T.
    adapters[s] = std::make_shared<const HostAdapter>(readHostAdapter(checked));
  }
  ForwardBatch batch;
  for (const auto& [slot, rows] : segments) {
    BatchSegment segment;
    segment.firstRow = static_cast<int64_t>(batch.tokens.size());
    segment.numRows = rows;
    segment.adapterSlot = slot;
    batch.segments.push_back(segment);
    batch.tokens.resize(batch.tokens.size() + rows, 0);
  }
  const int rows = static_cast<int>(batch.tokens.size());
  const std::vector<LoraGroup> groups = groupRowsByAdapter(batch, adapters);
  // The group layout the CUDA backend uses: q/k/v, o, gate/up and down.
  const std::vector<std::vector<LoraTarget>> fused = {
      {LoraTarget::Q, LoraTarget::K, LoraTarget::V}, {LoraTarget::O}, {LoraTarget::Gate, LoraTarget::Up}, {LoraTarget::Down}};
  std::vector<cuda::LoraTile> tiles;
  for (const BatchSegment& segment : batch.segments) {
    if (segment.adapterSlot < 0) continue;
    for (int64_t r = 0; r < segment.numRows; r += cuda::kLoraTileRows) {
      tiles.push_back({static_cast<int>(segment.firstRow + r), static_cast<int>(std::min<int64_t>(cuda::kLoraTileRows, segment.numRows - r)), segment.adapterSlot});
    }
  }
  int maxTileRows = 0;
  for (const cuda::LoraTile& tile : tiles) maxTileRows = std::max(maxTileRows, tile.numRows);
  auto dtiles = toDevice(tiles);
  cuda::DeviceBuffer<float> v(static_cast<size_t>(rows) * cuda::loraIntermediateStride(slots.maxRank()));
  for (int layer = 0; layer < spec.numLayers; ++layer) {
    for (const std::vector<LoraTarget>& targets : fused) {
      const int in = static_cast<int>(layout.localShape(targets[0]).in);
      int width = 0;
      for (LoraTarget t : targets) width += static_cast<int>(layout.localShape(t).out);
      const std::vector<float> x = exactIn<T>(randomFloats(static_cast<size_t>(rows) * in));
      const std::vector<float> y = randomFloats(static_cast<size_t>(rows) * width);
      std::vector<float> expected(y.size());
      int column = 0;
      for (LoraTarget t : targets) {
        const int out = static_cast<int>(layout.localShape(t).out);
        std::vector<float> part(static_cast<size_t>(rows) * out);
        for (int r = 0; r < rows; ++r) std::copy_n(y.begin() + static_cast<size_t>(r) * width + column, out, part.begin() + static_cast<size_t>(r) * out);
        addLoraDelta(groups, layer, t, x.data(), in, part.data(), out);
        for (int r = 0; r < rows; ++r) std::copy_n(part.begin() + static_cast<size_t>(r) * out, out, expected.begin() + static_cast<size_t>(r) * width + column);
        column += out;
      }
      const cuda::LoraGroup group = slots.group(layer, targets);
      auto dx = toDevice(narrow<T>(x));
      auto dy = toDevice(y);
      cuda::loraShrink(dx.data(), dtiles.data(), static_cast<int>(tiles.size()), maxTileRows, slots.view(), group, v.data(), nullptr);
      cuda::loraExpand(v.data(), dtiles.data(), static_cast<int>(tiles.size()), maxTileRows, slots.view(), group, dy.data(), width, nullptr);
      std::vector<float> deltaOurs = toHost(dy), deltaRef = expected;
      for (size_t i = 0; i < y.size(); ++i) {
        deltaOurs[i] -= y[i];
        deltaRef[i] -= y[i];
      }
      std::string names;
      for (LoraTarget t : targets) names += std::string(names.empty() ? "" : "+") + loraTargetName(t);
      report(tagged<T>("lora shrink/expand " + shape + " layer " + std::to_string(layer) + " " + names + " (delta)"), relativeError(deltaOurs, deltaRef), 1e-2);
    }
  }
}

void checkTokenSelect(int vocab) {
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
    int idMismatches = 0;
    double logprobError = 0.0;
    for (int r = 0; r < rows; ++r) {
      const LogitResult expected = evaluateLogits(logits.data() + static_cast<size_t>(r) * vocab, vocab, cpuRequests[static_cast<size_t>(r)]);
      const cuda::TokenResult& ours = results[static_cast<size_t>(r)];
      if (ours.token != expected.token || ours.numTop != static_cast<int>(expected.topIds.size())) ++idMismatches;
      logprobError = std::max(logprobError, std::abs(static_cast<double>(ours.tokenLogprob) - expected.tokenLogprob));
      logprobError = std::max(logprobError, std::abs(static_cast<double>(ours.targetLogprob) - expected.targetLogprob));
      for (size_t n = 0; n < expected.topIds.size() && n < static_cast<size_t>(ours.numTop); ++n) {
        if (ours.topIds[n] != expected.topIds[n]) ++idMismatches;
        logprobError = std::max(logprobError, std::abs(static_cast<double>(ours.topLogprobs[n]) - expected.topLogprobs[n]));
      }
    }
    const std::string what = std::string("token select ") + c.name + " vocab " + std::to_string(vocab);
    report(what + ": ids differing", idMismatches, 0, "count  ");
    report(what + ": logprobs", logprobError, 1e-4, "abs err");
  }
}

template <typename T>
void checkHalfKernels() {
  {
    cuda::Gemm gemm(nullptr);
    checkLinear<T>(gemm, 1, 4096, 6144, 0.0f);
    checkLinear<T>(gemm, 1, 14336, 40, 1.0f);
    checkLinear<T>(gemm, 1, 96, 40, 1.0f);
    checkLinear<T>(gemm, 5, 14336, 512, 1.0f);
    checkLinear<T>(gemm, 8, 96, 40, 0.0f);
    checkLinear<T>(gemm, 33, 4096, 1000, 1.0f);
  }
  checkRmsNorm<T>(7, 4096);
  checkRmsNorm<T>(3, 96);
  ModelSpec spec;
  spec.numHeads = 8;
  spec.numKvHeads = 2;
  spec.headDim = 128;
  spec.ropeTheta = 500000.0;
  checkRope<T>("plain", spec);
  spec.ropeScaling.type = RopeScaling::Type::Linear;
  spec.ropeScaling.factor = 4.0;
  checkRope<T>("linear x4", spec);
  spec.ropeScaling = {RopeScaling::Type::Llama3, 8.0, 1.0, 4.0, 8192.0};
  checkRope<T>("llama3", spec);
  spec.headDim = 32;
  checkRope<T>("llama3 d32", spec);
  checkSiluMul<T>(5, 14336);
  checkSiluMul<T>(2, 40);
  checkAttentionSuite<T>();
  checkLora<T>("mixed", {{0, 37}, {-1, 5}, {1, 1}, {2, 20}, {-1, 1}, {1, 1}, {2, 1}});
  checkLora<T>("decode", {{0, 1}, {-1, 1}, {1, 1}, {2, 1}, {1, 1}, {0, 1}});
}

}  // namespace

int main() {
  try {
    checkHalfKernels<__half>();
    checkHalfKernels<__nv_bfloat16>();
    checkTokenSelect(512);
    checkTokenSelect(128256);
  } catch (const std::exception& error) {
    std::printf("kernel checks: %s\n", error.what());
    return 1;
  }
  std::printf("%s: %d failing\n", failures ? "FAIL" : "all kernel checks passed", failures);
  return failures ? 1 : 0;
}

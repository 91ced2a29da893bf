// cuda::ropeAndWriteKv against the CPU applyRope(): float32 fused qkv rows in; rotated q, and k and v written
// into their (shuffled) cache slots, in T. Plain, linear x4 and llama3 scaling; head_dim 128, 32 and 16.
#include <numeric>

#include "../src/cpu/rope.h"
#include "../src/cuda/rope_kv_write.cuh"
#include "../src/rope_frequencies.h"
#include "check_common.cuh"

namespace loraserve::check {
namespace {

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
  const std::vector<int64_t> qShape = {rows, heads, d}, kvShape = {rows, kvHeads, d};
  compare(tagged<T>("rope " + name + ": q"), widen(toHost(dq)), q, tolerance<T>(), qShape);
  compare(tagged<T>("rope " + name + ": k in the cache"), widen(toHost(dk)), kExpected, tolerance<T>(), kvShape);
  compare(tagged<T>("rope " + name + ": v in the cache"), widen(toHost(dv)), vExpected, tolerance<T>(), kvShape);
}

template <typename T>
void checkAll() {
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
  spec.headDim = 16;
  checkRope<T>("llama3 d16", spec);
}

}  // namespace

void checkRopeKv() {
  checkAll<__half>();
  checkAll<__nv_bfloat16>();
}

}  // namespace loraserve::check

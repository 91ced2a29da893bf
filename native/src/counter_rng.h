// A counter-based random number: a pure function of (seed, draw index). A sequence's n-th draw is the same
// whatever batch it runs in and however steps are scheduled, so seeded requests are reproducible.
#pragma once

#include <cstdint>

namespace loraserve {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) with 53 random bits. Mixing the seed before the draw index keeps (seed, draw) and
// (seed + 1, draw - 1) unrelated.
inline double uniformDraw(uint64_t seed, uint64_t draw) {
  const uint64_t bits = splitmix64(splitmix64(seed) ^ draw);
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

}  // namespace loraserve

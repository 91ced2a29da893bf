// Finds NaNs and infinities in a tensor's raw bytes, for refusing an adapter that holds one (shard/adapters/
// finite-weights.ts). A float of any of the three dtypes is non-finite exactly when its exponent bits are all ones,
// so the scan reads bit patterns and never converts. Runs on a worker thread: an adapter is megabytes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dtype.h"

namespace loraserve {

// The index of the first non-finite element of the `count` elements at `data` (any alignment), or -1.
int64_t firstNonFinite(const uint8_t* data, size_t count, DType dtype);

// One tensor of a file's bytes to scan: its dtype, its first byte and its element count.
struct FiniteScanSpan {
  DType dtype;
  size_t offset;
  size_t count;
};

}  // namespace loraserve

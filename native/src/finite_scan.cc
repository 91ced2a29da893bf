#include "finite_scan.h"

#include <algorithm>
#include <cstring>

namespace loraserve {

namespace {

template <typename Word>
Word wordAt(const uint8_t* data, size_t i) {
  Word word;
  std::memcpy(&word, data + i * sizeof(Word), sizeof(Word));  // safetensors is little-endian, as is every host
  return word;
}

template <typename Word>
int64_t scan(const uint8_t* data, size_t count, Word exponent) {
  // A block is tested without branches (the loop vectorizes); only a block with a hit is walked for its index.
  constexpr size_t kBlock = 4096;
  for (size_t start = 0; start < count; start += kBlock) {
    const size_t end = std::min(count, start + kBlock);
    bool hit = false;
    for (size_t i = start; i < end; ++i) hit |= (wordAt<Word>(data, i) & exponent) == exponent;
    if (!hit) continue;
    for (size_t i = start; i < end; ++i) {
      if ((wordAt<Word>(data, i) & exponent) == exponent) return static_cast<int64_t>(i);
    }
  }
  return -1;
}

}  // namespace

int64_t firstNonFinite(const uint8_t* data, size_t count, DType dtype) {
  switch (dtype) {
    case DType::F32:
      return scan<uint32_t>(data, count, 0x7f800000u);
    case DType::F16:
      return scan<uint16_t>(data, count, 0x7c00);
    case DType::BF16:
      return scan<uint16_t>(data, count, 0x7f80);
  }
  return -1;
}

}  // namespace loraserve

#include "tensor_ref.h"

namespace loraserve {

size_t dtypeSize(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

const char* dtypeName(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
  }
  return "?";
}

}  // namespace loraserve

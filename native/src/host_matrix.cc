#include "host_matrix.h"

namespace loraserve {

HostMatrix readMatrix(const MappedFile& file, const TensorRef& ref, IndexRange rows, IndexRange cols) {
  HostMatrix matrix;
  matrix.rows = rows.size();
  matrix.cols = cols.size();
  matrix.data = readFloat32(file, ref, rows, cols);
  return matrix;
}

}  // namespace loraserve

// Read-only views of safetensors files: mmap a file, check a TensorRef against it, and copy a 2-D window of
// a tensor out as float32 (the CPU backend's arithmetic type) from F32, F16 or BF16.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tensor_ref.h"

namespace loraserve {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  // Borrows bytes already in host memory (an adapter's host tier): nothing is opened or mapped, and the owner
  // keeps the bytes alive while the view is used.
  MappedFile(const std::string& path, const uint8_t* data, size_t size);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
};

// Keeps each file mapped once while a set of tensors is read from it.
class MappedFiles {
 public:
  // Serves `path` from these bytes instead of the disk (see the borrowing MappedFile).
  void borrow(const std::string& path, const uint8_t* data, size_t size);
  const MappedFile& get(const std::string& path);

 private:
  std::map<std::string, std::unique_ptr<MappedFile>> files_;
};

// Half-open index range [begin, end).
struct IndexRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

// Throws unless ref lies inside the file, its byte length matches shape and dtype, and its shape is
// `expected`. `what` names the tensor in the message (e.g. "layer 3 q_proj").
void checkTensorRef(const MappedFile& file, const TensorRef& ref, const std::vector<int64_t>& expected,
                    const std::string& what);

// Copies rows x cols of a 2-D tensor (a 1-D tensor is one row) into a dense row-major float32 buffer.
std::vector<float> readFloat32(const MappedFile& file, const TensorRef& ref, IndexRange rows, IndexRange cols);

// IEEE half and bfloat16 bit patterns to float32.
float halfToFloat(uint16_t bits);
float bfloat16ToFloat(uint16_t bits);

}  // namespace loraserve

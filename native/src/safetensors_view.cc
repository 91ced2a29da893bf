#include "safetensors_view.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace loraserve {

namespace {

std::string shapeText(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error(path + ": cannot stat: " + std::strerror(err));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapped == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw std::runtime_error(path + ": cannot mmap: " + std::strerror(err));
    }
    data_ = static_cast<const uint8_t*>(mapped);
    mapped_ = true;
  }
  ::close(fd);
}

MappedFile::MappedFile(const std::string& path, const uint8_t* data, size_t size)
    : path_(path), data_(data), size_(size) {}

MappedFile::~MappedFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFiles::borrow(const std::string& path, const uint8_t* data, size_t size) {
  files_[path] = std::make_unique<MappedFile>(path, data, size);
}

const MappedFile& MappedFiles::get(const std::string& path) {
  auto found = files_.find(path);
  if (found != files_.end()) return *found->second;
  auto file = std::make_unique<MappedFile>(path);
  const MappedFile& ref = *file;
  files_.emplace(path, std::move(file));
  return ref;
}

void checkTensorRef(const MappedFile& file, const TensorRef& ref, const std::vector<int64_t>& expected,
                    const std::string& what) {
  const std::string where = file.path() + ": " + what;
  if (ref.shape != expected) {
    throw std::runtime_error(where + " has shape " + shapeText(ref.shape) + ", expected " + shapeText(expected));
  }
  uint64_t elements = 1;
  for (int64_t dim : ref.shape) elements *= static_cast<uint64_t>(dim);
  if (ref.nbytes != elements * dtypeSize(ref.dtype)) {
    throw std::runtime_error(where + ": " + std::to_string(ref.nbytes) + " bytes do not hold " + shapeText(ref.shape) +
                             " of " + dtypeName(ref.dtype));
  }
  if (ref.offset > file.size() || ref.nbytes > file.size() - ref.offset) {
    throw std::runtime_error(where + ": bytes [" + std::to_string(ref.offset) + ", " +
                             std::to_string(ref.offset + ref.nbytes) + ") lie outside the file (" +
                             std::to_string(file.size()) + " bytes)");
  }
}

float halfToFloat(uint16_t bits) {
  const uint32_t sign = (bits >> 15) & 1u;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // zero or subnormal
  } else if (exponent == 31) {
    magnitude = mantissa ? std::nanf("") : INFINITY;
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

float bfloat16ToFloat(uint16_t bits) {
  const uint32_t word = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

std::vector<float> readFloat32(const MappedFile& file, const TensorRef& ref, IndexRange rows, IndexRange cols) {
  const int64_t totalCols = ref.shape.empty() ? 1 : ref.shape.back();
  const size_t elementSize = dtypeSize(ref.dtype);
  std::vector<float> out(static_cast<size_t>(rows.size() * cols.size()));
  // Tensors start at any byte offset (the header length is arbitrary), so elements are read with memcpy.
  const uint8_t* base = file.data() + ref.offset;
  float* dst = out.data();
  for (int64_t r = rows.begin; r < rows.end; ++r) {
    const uint8_t* src = base + (static_cast<size_t>(r * totalCols + cols.begin)) * elementSize;
    for (int64_t c = 0; c < cols.size(); ++c, src += elementSize) {
      if (ref.dtype == DType::F32) {
        std::memcpy(dst++, src, 4);
      } else {
        uint16_t bits;
        std::memcpy(&bits, src, 2);
        *dst++ = ref.dtype == DType::F16 ? halfToFloat(bits) : bfloat16ToFloat(bits);
      }
    }
  }
  return out;
}

}  // namespace loraserve

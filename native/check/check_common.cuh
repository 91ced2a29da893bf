// Shared by the kernel checks (native/check/check_*.cu, run by check_main.cu as loraserve_kernel_checks): random
// inputs, rounding through the 16-bit types, device transfers, and the element-wise comparison.
//
// Every element of a GPU output must lie within atol + rtol * |ref| of the CPU backend's result (the spec); the
// tolerances are per output type (tolerance<T>()), set by the rounding of what the kernel reads and writes. A
// failing case prints its first kFirstMismatches bad elements with their indices (in the output's own shape)
// and values, and the program exits 1. Every passing line also prints its worst element as a fraction of the
// allowed error ("worst 0.31 of tol"), so the margin is visible.
//
// LORASERVE_CHECK_PLANT=1 perturbs one element of every GPU output before it is compared (and one id of every id
// list): every case must then FAIL and name that element; check_main.cu says whether all did.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../src/cuda/device_buffer.h"
#include "../src/cuda/half_types.cuh"

namespace loraserve::check {

using cuda::checkCuda;
using cuda::HalfType;

inline std::mt19937 rng(20261125);
inline int checksRun = 0;
inline int failures = 0;
constexpr int kFirstMismatches = 5;

inline bool planting() {
  const char* value = std::getenv("LORASERVE_CHECK_PLANT");
  return value != nullptr && value[0] != '\0' && std::strcmp(value, "0") != 0;
}

struct Tolerance {
  double atol, rtol;
};

// One rounding of the output to 16 bits is half an ulp: 2^-11 relative in float16, 2^-8 in bfloat16; the
// kernels' float32 arithmetic in another order adds a little, and values near zero need the absolute term
// (float16 loses relative precision below 6e-5). float32 outputs come from float32 accumulation of exactly
// rounded inputs, so only summation order differs from the CPU.
template <typename T>
Tolerance tolerance();
template <>
inline Tolerance tolerance<float>() { return {1e-4, 1e-4}; }
template <>
inline Tolerance tolerance<__half>() { return {1e-3, 2e-3}; }
template <>
inline Tolerance tolerance<__nv_bfloat16>() { return {8e-3, 1.6e-2}; }

template <typename T>
const char* typeName() { return HalfType<T>::kName; }
template <>
inline const char* typeName<float>() { return "float32"; }

template <typename T>
std::string tagged(const std::string& what) {
  return std::string(HalfType<T>::kName) + " " + what;
}

inline std::vector<float> randomFloats(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
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

// "[r, c]" for the flat index i of an array of the given shape (row-major); "[i]" without one.
inline std::string indexOf(size_t i, const std::vector<int64_t>& shape) {
  if (shape.empty()) return "[" + std::to_string(i) + "]";
  std::vector<int64_t> coords(shape.size());
  size_t rest = i;
  for (size_t d = shape.size(); d-- > 0;) {
    coords[d] = static_cast<int64_t>(rest % static_cast<size_t>(shape[d]));
    rest /= static_cast<size_t>(shape[d]);
  }
  std::string out = "[";
  for (size_t d = 0; d < coords.size(); ++d) out += (d ? ", " : "") + std::to_string(coords[d]);
  return out + "]";
}

// The element the plant perturbs: spread over the output by the case's name.
inline size_t plantedIndex(const std::string& what, size_t size) { return std::hash<std::string>{}(what) % size; }

// Every element of `ours` (the GPU's) within tol of `reference`; prints one line, and the first mismatches.
inline bool compare(const std::string& what, std::vector<float> ours, const std::vector<float>& reference, Tolerance tol,
                    const std::vector<int64_t>& shape = {}, const char* typeTag = "") {
  ++checksRun;
  if (ours.size() != reference.size()) {
    ++failures;
    std::printf("%-62s FAIL: %zu elements, expected %zu\n", what.c_str(), ours.size(), reference.size());
    return false;
  }
  if (planting() && !ours.empty()) {
    const size_t i = plantedIndex(what, ours.size());
    ours[i] = reference[i] + static_cast<float>(1.0 + 2.0 * std::abs(reference[i]));
  }
  size_t bad = 0;
  double worst = 0.0;
  size_t worstAt = 0;
  std::vector<size_t> first;
  for (size_t i = 0; i < reference.size(); ++i) {
    const double ref = reference[i], got = ours[i];
    const double allowed = tol.atol + tol.rtol * std::abs(ref);
    const double err = std::abs(got - ref);
    const bool ok = std::isfinite(got) && err <= allowed;
    if (!ok) {
      if (first.size() < kFirstMismatches) first.push_back(i);
      ++bad;
    } else if (err / allowed > worst) {
      worst = err / allowed;
      worstAt = i;
    }
  }
  if (bad == 0) {
    std::printf("%-62s ok   %zu elements, worst %.2f of tol at %s (atol %.0e rtol %.0e%s%s)\n", what.c_str(), reference.size(),
                worst, indexOf(worstAt, shape).c_str(), tol.atol, tol.rtol, typeTag[0] ? " " : "", typeTag);
    return true;
  }
  ++failures;
  std::printf("%-62s FAIL %zu of %zu elements beyond atol %.0e + rtol %.0e * |ref|\n", what.c_str(), bad, reference.size(), tol.atol,
              tol.rtol);
  for (size_t i : first) {
    std::printf("    at %-20s gpu %.7g  ref %.7g  |diff| %.3g  allowed %.3g\n", indexOf(i, shape).c_str(), ours[i], reference[i],
                std::abs(static_cast<double>(ours[i]) - reference[i]), tol.atol + tol.rtol * std::abs(static_cast<double>(reference[i])));
  }
  return false;
}

// Exact equality of integer results (token ids, counts); labels[i] names element i when given.
inline bool compareIds(const std::string& what, std::vector<int64_t> ours, const std::vector<int64_t>& reference,
                       const std::vector<std::string>& labels = {}) {
  ++checksRun;
  if (planting() && !ours.empty()) ours[plantedIndex(what, ours.size())] += 1;
  size_t bad = 0;
  std::vector<size_t> first;
  for (size_t i = 0; i < reference.size(); ++i) {
    if (i >= ours.size() || ours[i] != reference[i]) {
      if (first.size() < kFirstMismatches) first.push_back(i);
      ++bad;
    }
  }
  if (ours.size() != reference.size()) ++bad;
  if (bad == 0) {
    std::printf("%-62s ok   %zu ids equal\n", what.c_str(), reference.size());
    return true;
  }
  ++failures;
  std::printf("%-62s FAIL %zu of %zu ids differ\n", what.c_str(), bad, reference.size());
  for (size_t i : first) {
    const std::string label = i < labels.size() ? labels[i] : "[" + std::to_string(i) + "]";
    std::printf("    at %-28s gpu %lld  ref %lld\n", label.c_str(), i < ours.size() ? static_cast<long long>(ours[i]) : -1LL,
                static_cast<long long>(reference[i]));
  }
  return false;
}

// The families, one file each.
void checkGemm();
void checkRmsNorm();
void checkRopeKv();
void checkSiluMul();
void checkAttention();
void checkLora();
void checkTokenSelect();
void checkHostHalf();

}  // namespace loraserve::check

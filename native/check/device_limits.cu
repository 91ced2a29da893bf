// The two ceilings of the GPU it runs on, measured rather than taken from a datasheet (the bench divides by them):
//   device-to-device copy bandwidth (bytes read + bytes written per second) of a 2 GiB copy, and
//   the bf16 matrix product rate of cuBLAS in the engine's configuration (bf16 operands, float32 accumulation
//   and output) at 8192 x 8192 x 8192, on random data (zeros run faster than real data), and
//   the weight bytes per second the engine's one-row product (matrix_vector.cu, what a batch-1 decode step runs)
//   reads at the 8B model's gate (or up) and down shapes, each weight larger than the L2 cache, and
//   the same for the products of batched decode (2, 4 and 8 rows) at its o_proj, gate (or up) and down shapes,
//   by the skinny kernel (skinny_gemm.cu, what Gemm::linear runs for them) and by cuBLAS, which it replaced. Runs
//   rotate over as many copies of the weight as fit in 128 MiB, so a weight smaller than L2 is not read from it.
//   host-to-device bytes per second of a 96 MiB copy: from pinned memory (the bus; how an adapter load copies
//   its slot image) and from ordinary pageable memory.
// Prints one JSON object: {"copyBytesPerSecond": ..., "gemmFlopsPerSecond": ..., "matrixVectorBytesPerSecond":
// {"4096x14336": ..., "14336x4096": ...}, "batchedProductBytesPerSecond": {"4096x4096": {"8": {"skinny": ...,
// "cublas": ...}, "32": ..., "64": ...}, "4096x14336": ..., "14336x4096": ...}, "hostToDeviceBytesPerSecond":
// {"pinned": ..., "pageable": ...}}; shapes are in x out; medians of 10 timed runs.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../src/cuda/cuda_check.h"
#include "../src/cuda/device_buffer.h"
#include "../src/cuda/gemm.h"

using namespace loraserve::cuda;

namespace {

__global__ void fillRandom(__nv_bfloat16* out, size_t count, unsigned seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    unsigned x = static_cast<unsigned>(i) * 2654435761u ^ seed;
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    out[i] = __float2bfloat16((static_cast<float>(x & 0xffff) / 65536.0f - 0.5f) * 0.1f);
  }
}

template <typename Work>
double medianSeconds(cudaStream_t stream, Work work) {
  cudaEvent_t start, stop;
  checkCuda(cudaEventCreate(&start), "cudaEventCreate");
  checkCuda(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < 3; ++i) work();  // warm-up: handles, kernel selection, clocks
  std::vector<double> times;
  for (int i = 0; i < 10; ++i) {
    checkCuda(cudaEventRecord(start, stream), "cudaEventRecord");
    work();
    checkCuda(cudaEventRecord(stop, stream), "cudaEventRecord");
    checkCuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    checkCuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms / 1e3);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main() {
  try {
    cudaStream_t stream;
    checkCuda(cudaStreamCreate(&stream), "cudaStreamCreate");
    const size_t copyBytes = size_t{2} << 30;
    DeviceBuffer<unsigned char> src(copyBytes), dst(copyBytes);
    fillRandom<<<4096, 256, 0, stream>>>(reinterpret_cast<__nv_bfloat16*>(src.data()), copyBytes / 2, 1u);
    checkLaunch("fillRandom");
    const double copySeconds = medianSeconds(stream, [&] {
      checkCuda(cudaMemcpyAsync(dst.data(), src.data(), copyBytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
    });

    const int n = 8192;
    DeviceBuffer<__nv_bfloat16> a(size_t{1} * n * n), b(size_t{1} * n * n);
    DeviceBuffer<float> c(size_t{1} * n * n);
    fillRandom<<<4096, 256, 0, stream>>>(a.data(), a.size(), 2u);
    fillRandom<<<4096, 256, 0, stream>>>(b.data(), b.size(), 3u);
    checkLaunch("fillRandom");
    Gemm gemm(stream);
    const double gemmSeconds = medianSeconds(stream, [&] { gemm.linear(a.data(), n, n, b.data(), n, c.data(), n, 0.0f); });
    std::printf("{\"copyBytesPerSecond\": %.6e, \"gemmFlopsPerSecond\": %.6e, \"matrixVectorBytesPerSecond\": {",
                2.0 * copyBytes / copySeconds, 2.0 * n * n * static_cast<double>(n) / gemmSeconds);
    const int shapes[2][2] = {{4096, 14336}, {14336, 4096}};
    for (int s = 0; s < 2; ++s) {
      const int in = shapes[s][0], out = shapes[s][1];
      const double seconds = medianSeconds(stream, [&] { gemm.linear(a.data(), 1, in, b.data(), out, c.data(), out, 0.0f); });
      std::printf("%s\"%dx%d\": %.6e", s ? ", " : "", in, out, 2.0 * in * out / seconds);
    }
    std::printf("}, \"batchedProductBytesPerSecond\": {");
    const int batchedShapes[3][2] = {{4096, 4096}, {4096, 14336}, {14336, 4096}};
    const int batchedRows[3] = {2, 4, 8};
    for (int s = 0; s < 3; ++s) {
      const int in = batchedShapes[s][0], out = batchedShapes[s][1];
      const size_t weightCount = static_cast<size_t>(in) * out;
      const size_t copies = b.size() / weightCount;
      std::printf("%s\"%dx%d\": {", s ? ", " : "", in, out);
      for (int r = 0; r < 3; ++r) {
        const int rows = batchedRows[r];
        size_t run = 0;
        const auto rate = [&](bool byCublas) {
          const double seconds = medianSeconds(stream, [&] {
            const __nv_bfloat16* w = b.data() + (run++ % copies) * weightCount;
            if (byCublas) {
              gemm.linearByCublas(a.data(), rows, in, w, out, c.data(), out, 0.0f);
            } else {
              gemm.linear(a.data(), rows, in, w, out, c.data(), out, 0.0f);
            }
          });
          return 2.0 * weightCount / seconds;
        };
        const double skinny = rate(false);
        std::printf("%s\"%d\": {\"skinny\": %.6e, \"cublas\": %.6e}", r ? ", " : "", rows, skinny, rate(true));
      }
      std::printf("}");
    }
    const size_t hostBytes = size_t{96} << 20;
    PinnedBuffer<unsigned char> pinned(hostBytes);
    std::memset(pinned.data(), 1, hostBytes);
    std::vector<unsigned char> pageable(hostBytes, 1);
    auto hostToDevice = [&](const void* src) {
      checkCuda(cudaMemcpyAsync(dst.data(), src, hostBytes, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
    };
    const double pinnedSeconds = medianSeconds(stream, [&] { hostToDevice(pinned.data()); });
    const double pageableSeconds = medianSeconds(stream, [&] { hostToDevice(pageable.data()); });
    std::printf("}, \"hostToDeviceBytesPerSecond\": {\"pinned\": %.6e, \"pageable\": %.6e}}\n",
                hostBytes / pinnedSeconds, hostBytes / pageableSeconds);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "device limits: %s\n", error.what());
    return 1;
  }
  return 0;
}

// loraserve_kernel_checks: every CUDA kernel against the CPU backend's function of the same job (the spec), on
// fresh random inputs, element by element (check_common.cuh); one file per kernel family. Exits 1 on a failure.
#include <exception>

#include "check_common.cuh"

int main() {
  using namespace loraserve::check;
  try {
    checkGemm();
    checkRmsNorm();
    checkRopeKv();
    checkSiluMul();
    checkAttention();
    checkLora();
    checkTokenSelect();
    checkHostHalf();
  } catch (const std::exception& error) {
    std::printf("kernel checks: %s\n", error.what());
    return 1;
  }
  if (planting()) {
    std::printf("planted one bad element in each of %d checks: %d failed%s\n", checksRun, failures,
                failures == checksRun ? " (all, as they must)" : " (SOME PASSED: the compare misses planted errors)");
  } else {
    std::printf("%s: %d checks, %d failing\n", failures ? "FAIL" : "all kernel checks passed", checksRun, failures);
  }
  return failures ? 1 : 0;
}

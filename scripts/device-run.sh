#!/bin/bash
# On the GPU machine, inside ../shared/device's on-device.sh (docs/performance.md, "CUDA decode" has the whole
# recipe): builds the addon with CUDA, then runs the command given, logs under $OUT.
#   bash .device/on-device.sh bash scripts/device-run.sh 'npm run check:cuda && npx vitest run test/cuda-*.test.ts'
# The shared fixture travels in the device bundle (.device/extra/tiny-llama, copied there by hand: it is outside
# the tree) and is put where the tests look for it.
set -o pipefail
root=$(pwd)
if [ -d "$root/.device/extra/tiny-llama" ]; then
  mkdir -p "$root/../shared/fixtures" && cp -r "$root/.device/extra/tiny-llama" "$root/../shared/fixtures/"
fi
chmod +x dist/client/cli.js
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv
if ! CMAKE_BUILD_PARALLEL_LEVEL=16 npx cmake-js compile -d native --out native/build > "$OUT/build.txt" 2>&1; then
  tail -40 "$OUT/build.txt"
  exit 1
fi
echo "build ok"
bash -c "$1"

// The CUDA engine's 16-bit type (EngineOptions dtype, shard --dtype): a checkpoint with a weight beyond
// float16's range is refused in float16 with a message naming the tensor and bfloat16, and loads in bfloat16;
// an unknown type is refused on every device.
//
// The range test runs only where the CUDA engine can (test/helpers/cuda.ts); elsewhere it skips and says so.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createEngine, type DeviceDtype, type EngineOptions } from "../native/addon.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { cudaAvailable } from "./helpers/cuda.js";
import { fixtureSets } from "./helpers/fixture-sets.js";

const cuda = cudaAvailable();
if (!cuda) console.warn("NOTE: the float16 range test of test/cuda-dtype.test.ts is SKIPPED: no CUDA backend in the addon or no NVIDIA GPU.");
// A float16 file cannot hold a value beyond float16's range: the test needs bf16 or float32 weights.
const set = fixtureSets().find((s) => loadModelFiles(s.modelDir).weights.layers[0]!.down.dtype !== "F16");

function engineOptions(modelDir: string, overrides: Partial<EngineOptions>): EngineOptions {
  const { spec, weights } = loadModelFiles(modelDir);
  return { device: "cpu", rank: 0, world: 1, spec, weights, numKvBlocks: 8, blockSize: 4, maxLoras: 1, maxLoraRank: 8, threads: 1, ...overrides };
}

describe("engine dtype", () => {
  it("refuses a type it does not know", () => {
    const dir = fixtureSets()[0]!.modelDir;
    expect(() => createEngine(engineOptions(dir, { dtype: "float32" as DeviceDtype }))).toThrow(/EngineOptions.dtype.*"float16" or "bfloat16"/);
  });

  it.skipIf(!cuda || set === undefined)("float16 refuses a weight beyond its range, naming the tensor; bfloat16 loads it", () => {
    const dir = mkdtempSync(join(tmpdir(), "loraserve-dtype-"));
    try {
      cpSync(set!.modelDir, dir, { recursive: true });
      const down = loadModelFiles(dir).weights.layers[0]!.down;
      // 2^20: beyond float16's 65504, exact in bfloat16 and float32.
      const bytes = readFileSync(down.file);
      if (down.dtype === "BF16") bytes.writeUInt16LE(0x4980, down.offset);
      else bytes.writeFloatLE(2 ** 20, down.offset);
      writeFileSync(down.file, bytes);
      expect(() => createEngine(engineOptions(dir, { device: "cuda", numKvBlocks: 0, gpuMemoryFraction: 0.05, dtype: "float16" }))).toThrow(
        /layer 0 down_proj has values beyond float16's range \(65504\): load the model with dtype bfloat16/,
      );
      const engine = createEngine(engineOptions(dir, { device: "cuda", numKvBlocks: 0, gpuMemoryFraction: 0.05, dtype: "bfloat16" }));
      expect(engine.info().device).toBe("cuda");
      engine.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// The built addon's tables (exports.contract, native/src/contract.h) agree with native/addon.ts: the LoRA targets,
// the dtype codes, the packed adapter layout and the Engine class's methods. TypeScript keeps no copy of the tables'
// values, so these checks and the one addon.ts makes when it is imported are what hold the two sides together.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { contractMismatches, createEngine, LORA_TARGETS, loadAddon, type AdapterWeights, type NativeContract, type NativeEngine } from "../native/addon.js";
import { loadAdapterFiles } from "../shard/model/adapter.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { projectFixture } from "./helpers/fixture-sets.js";

// Every method of the NativeEngine interface, once: tsc refuses this object when a method is added or removed there.
const NATIVE_ENGINE_METHODS: Record<keyof NativeEngine, true> = {
  info: true,
  step: true,
  loadAdapter: true,
  unloadAdapter: true,
  resumeFromIdle: true,
  follow: true,
  watchGroup: true,
  close: true,
};

const sorted = (names: readonly string[]) => [...names].sort();

describe("native contract", () => {
  const { contract, Engine } = loadAddon();

  it("agrees with the types of native/addon.ts", () => {
    expect(contractMismatches(contract)).toEqual([]);
  });

  it("gives TypeScript the engine's order of the LoRA targets", () => {
    expect(LORA_TARGETS).toEqual(contract.loraTargets);
    expect(contract.loraTargets).toHaveLength(7);
  });

  it("numbers the dtypes 0, 1, 2, ... and packs every property of a pair and a tensor ref once", () => {
    const codes = Object.values(contract.dtypes).sort((a, b) => a - b);
    expect(codes).toEqual(codes.map((_, index) => index));
    expect(sorted(contract.packedLayout.pair)).toEqual(["a", "b", "layer", "target"]);
    expect(sorted(contract.packedLayout.tensorRef)).toEqual(["dtype", "file", "nbytes", "offset", "shape"]);
  });

  it("lists the methods of the addon's Engine prototype, which are those of NativeEngine", () => {
    const prototypeMethods = Object.getOwnPropertyNames(Engine.prototype).filter((name) => name !== "constructor");
    expect(sorted(contract.engineMethods)).toEqual(sorted(prototypeMethods));
    expect(sorted(contract.engineMethods)).toEqual(sorted(Object.keys(NATIVE_ENGINE_METHODS)));
  });

  it("names what a stale addon gets wrong", () => {
    const stale: NativeContract = {
      loraTargets: [...contract.loraTargets.filter((target) => target !== "down_proj"), "lm_head"],
      dtypes: { ...contract.dtypes, F8_E4M3: 3 },
      packedLayout: { pair: [...contract.packedLayout.pair, "layer"], tensorRef: contract.packedLayout.tensorRef.filter((field) => field !== "shape") },
      engineMethods: [...contract.engineMethods, "reset"],
    };
    expect(contractMismatches(stale)).toEqual([
      "loraTargets lacks down_proj",
      "loraTargets has lm_head, which native/addon.ts does not declare",
      "dtypes has F8_E4M3, which native/addon.ts does not declare",
      "packedLayout.pair names something twice",
      "packedLayout.tensorRef lacks shape",
      "engineMethods has reset, which native/addon.ts does not declare",
    ]);
  });

  // The packer writes in the addon's order and the binding reads in it: a bad value of each field is refused under
  // that field's name, so no field lands in another's place.
  it("refuses a bad value of each packed field naming that field", async () => {
    const set = projectFixture("demo");
    const { spec, weights } = loadModelFiles(set.modelDir);
    const adapter = loadAdapterFiles(join(set.adaptersDir, Object.keys(set.refs.adapters)[0]!), spec).weights;
    const engine = createEngine({ device: "cpu", rank: 0, world: 1, spec, weights, numKvBlocks: 4, blockSize: 4, maxLoras: 1, maxLoraRank: 64, threads: 1 });
    const [first] = adapter.pairs;
    const withFirst = (pair: object): AdapterWeights => ({ ...adapter, pairs: [{ ...first!, ...pair } as AdapterWeights["pairs"][number]] });
    const bad = (value: object) => ({ ...first!.b, ...value });
    try {
      await expect(engine.loadAdapter(0, withFirst({ layer: "0" }))).rejects.toThrow("AdapterWeights.pairs[0].layer must be a number");
      await expect(engine.loadAdapter(0, withFirst({ target: "lm_head" }))).rejects.toThrow(`AdapterWeights.pairs[0].target must be one of ${contract.loraTargets.join(", ")}`);
      await expect(engine.loadAdapter(0, withFirst({ b: bad({ file: 7 }) }))).rejects.toThrow("AdapterWeights.pairs[0].b.file must be a string");
      await expect(engine.loadAdapter(0, withFirst({ b: bad({ dtype: "F8" }) }))).rejects.toThrow('AdapterWeights.pairs[0].b.dtype must be "F32", "F16" or "BF16"');
      await expect(engine.loadAdapter(0, withFirst({ b: bad({ offset: -1 }) }))).rejects.toThrow("AdapterWeights.pairs[0].b.offset must be an integer");
      await expect(engine.loadAdapter(0, withFirst({ b: bad({ nbytes: 0.5 }) }))).rejects.toThrow("AdapterWeights.pairs[0].b.nbytes must be an integer");
      await expect(engine.loadAdapter(0, withFirst({ b: bad({ shape: "4x4" }) }))).rejects.toThrow("AdapterWeights.pairs[0].b.shape must be an array");
      await expect(engine.loadAdapter(0, withFirst({ b: bad({ shape: [4, null] }) }))).rejects.toThrow("AdapterWeights.pairs[0].b.shape[1] must be a number");
    } finally {
      engine.close();
    }
  });
});

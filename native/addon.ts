// The typed boundary of the native addon (native/src/addon.cc). Everything that crosses into C++ is plain
// data described here; JSON parsing, name mapping and validation happen in TypeScript before (shard/model/),
// so the engine only does mmap and math.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The safetensors dtypes the engine reads. A value only so that loading can hold the built addon's table to it
 * (contract.dtypes numbers them); the type is its keys.
 */
const DTYPE_NAMES = { F32: true, F16: true, BF16: true } as const;
export type DType = keyof typeof DTYPE_NAMES;

/** One tensor inside a safetensors file, already checked against the file's size by the TS loader. */
export interface TensorRef {
  /** Absolute path of the .safetensors file. */
  file: string;
  dtype: DType;
  shape: number[];
  /** Byte offset of the first element from the start of the file (header included). */
  offset: number;
  /** Byte length; equals product(shape) * sizeof(dtype). */
  nbytes: number;
}

export type RopeScaling =
  | { type: "none" }
  | { type: "linear"; factor: number }
  | {
      type: "llama3";
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

export interface ModelSpec {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  maxPositionEmbeddings: number;
}

/**
 * The seven projections a LoRA adapter may target. A value only so that loading can hold the built addon's table to
 * it; the type is its keys, the engine's order is LORA_TARGETS.
 */
const LORA_TARGET_NAMES = {
  q_proj: true,
  k_proj: true,
  v_proj: true,
  o_proj: true,
  gate_proj: true,
  up_proj: true,
  down_proj: true,
} as const;
export type LoraTarget = keyof typeof LORA_TARGET_NAMES;

export interface LayerWeights {
  inputNorm: TensorRef;
  postAttentionNorm: TensorRef;
  q: TensorRef;
  k: TensorRef;
  v: TensorRef;
  o: TensorRef;
  gate: TensorRef;
  up: TensorRef;
  down: TensorRef;
}

export interface BaseWeights {
  embedTokens: TensorRef;
  /** null when the embeddings are tied: the output projection reuses embedTokens. */
  lmHead: TensorRef | null;
  finalNorm: TensorRef;
  layers: LayerWeights[];
}

export interface EngineOptions {
  device: "cpu" | "cuda";
  /** Tensor-parallel rank of this process and the group size; the engine loads only its slice. */
  rank: number;
  world: number;
  /**
   * world > 1: where the group meets (torchrun's MASTER_ADDR / MASTER_PORT). Rank 0 listens there, the others
   * connect; the constructor returns once every rank has met. Absent: 127.0.0.1:29500.
   */
  masterAddr?: string;
  masterPort?: number;
  spec: ModelSpec;
  weights: BaseWeights;
  /**
   * KV cache: number of blocks and tokens per block (the TS block manager hands out block ids). numKvBlocks 0
   * (device "cuda" only): as many blocks as fit in gpuMemoryFraction of the GPU; info() reports the count.
   */
  numKvBlocks: number;
  blockSize: number;
  /**
   * Adapter slots in the engine and the largest rank a slot holds. maxLoras -1 (device "cuda" only): as many
   * slots as fit in adapterMemoryFraction of the memory the weights leave of the engine's share, at most 1024;
   * info() reports the count.
   */
  maxLoras: number;
  maxLoraRank: number;
  /** CPU worker threads; 0 means the machine's core count. */
  threads: number;
  /**
   * With numKvBlocks 0: the share of the GPU's total memory this engine may take (vLLM's
   * --gpu-memory-fraction): weights, adapter slots, activations and workspace first, the KV cache fills the
   * rest (never more than is free). Memory of other processes is not counted. Absent: 0.9.
   */
  gpuMemoryFraction?: number;
  /** With maxLoras -1: the share of the room after the weights the adapter slots take. Absent: 0.2. */
  adapterMemoryFraction?: number;
  /**
   * Device "cuda": the 16-bit type of the weights, activations and KV cache on the GPU (sums, the residual
   * stream and logits are float32 either way). float16 carries three more mantissa bits than bfloat16, which
   * is what brings logits within 2e-2 of the float32 reference (docs/performance.md "Precision"); bfloat16
   * has float32's range. Weights are converted from whatever the checkpoint stores; a weight outside
   * float16's range is refused with a message naming bfloat16. The CPU backend computes in float32 and
   * ignores this. Absent: float16.
   */
  dtype?: DeviceDtype;
  /**
   * Device "cuda", world 1: run the tensor-parallel path anyway (a one-rank NCCL communicator and its all-reduces
   * in every layer), to check it and its cost against the plain path. World > 1 always takes it. Absent: false.
   */
  tensorParallelPath?: boolean;
  /** Device "cuda": the GPU this rank uses, among those CUDA_VISIBLE_DEVICES shows. Absent or -1: GPU `rank`. */
  gpu?: number;
}

export type DeviceDtype = "float16" | "bfloat16";

/** One LoRA target of one layer: y += scaling * B (A x). A is [rank, in], B is [out, rank]. */
export interface LoraTensorPair {
  layer: number;
  target: LoraTarget;
  a: TensorRef;
  b: TensorRef;
}

export interface AdapterWeights {
  rank: number;
  /** lora_alpha / r, or lora_alpha / sqrt(r) for rsLoRA. */
  scaling: number;
  pairs: LoraTensorPair[];
  /**
   * The contents of files the pairs name (keyed by TensorRef.file), already in host memory: the engine reads
   * those tensors from these bytes and never opens the files. Files not given here are mapped from disk.
   */
  fileBytes?: Readonly<Record<string, Uint8Array>>;
}

export interface SamplingParams {
  /** 0 means greedy (argmax); otherwise the softmax temperature. */
  temperature: number;
  /** 0 means no top-k cut. */
  topK: number;
  /** 1 means no nucleus cut. */
  topP: number;
  /** Seed of the counter-based generator. */
  seed: number;
  /** Index of the token being drawn: with the seed it fixes the random number, so no state is kept. */
  draw: number;
  /**
   * Typical sampling (transformers' TypicalLogitsWarper), after top-k and top-p: keep the tokens whose surprise is
   * closest to the entropy until their probability reaches typicalP. Absent or 1: no cut.
   */
  typicalP?: number;
  /**
   * The penalties look at SeqStep.penaltyTokens and apply before everything above, greedy included, in this
   * order. Repetition (transformers' definition): every token of the prompt and the generated text has a positive
   * logit divided by it, a negative one multiplied. Absent or 1: none.
   */
  repetitionPenalty?: number;
  /** OpenAI's definition, over the generated tokens only: logit -= frequencyPenalty * count. Absent: 0. */
  frequencyPenalty?: number;
  /** OpenAI's definition, over the generated tokens only: logit -= presencePenalty if count > 0. Absent: 0. */
  presencePenalty?: number;
}

/** What one sequence contributes to one step. */
export interface SeqStep {
  /** Tokens to run this step: a prompt chunk, or the single last generated token. */
  tokens: Int32Array;
  /**
   * Instead of tokens (which is then empty): the one token this step runs is the one the step started just before
   * this one draws at its entry previousResult, still in flight (so the next step can start before the JS thread
   * has seen that token). With penaltyTokens, that token is appended to them too. Absent: tokens says.
   */
  previousResult?: number;
  /** Position of tokens[0] in the sequence; KV of positions [0, startPos) is already cached. */
  startPos: number;
  /** KV block ids of this sequence, enough for startPos + tokens.length positions. */
  blockTable: Int32Array;
  /** Engine adapter slot, or -1 for the base model alone. */
  adapterSlot: number;
  /** Draw a next token from the logits of the last position. */
  sample: boolean;
  sampling: SamplingParams;
  /**
   * With sample and a penalty: the sequence's ids so far, the prompt then the generated ones. Absent or null: no
   * token is penalised. The engine does the counting; only ids cross.
   */
  penaltyTokens?: Int32Array | null;
  /** With penaltyTokens: how many of them, from the start, are the prompt (frequency and presence skip those). */
  penaltyPromptLength?: number;
  /** Report this many most likely alternatives with the drawn token (0: none). */
  topN: number;
  /** Per position i: a token id whose logprob at position i is wanted (usually tokens[i+1]), -1 for none. */
  logprobTargets: Int32Array | null;
  /** Diagnostics and tests: return the raw logits of every position of this step. */
  returnLogits: boolean;
}

export interface SeqResult {
  /** The drawn token, or -1 when sample was false. */
  token: number;
  /** log-softmax of the RAW logits at the drawn token: no penalty, temperature or cut changes it (as topLogprobs). */
  logprob: number;
  topIds: Int32Array;
  topLogprobs: Float32Array;
  /** One entry per position, NaN where the target was -1; empty when logprobTargets was null. */
  targetLogprobs: Float32Array;
  /** [tokens.length * vocab] when returnLogits was set, else empty. */
  logits: Float32Array;
}

export interface EngineInfo {
  device: "cpu" | "cuda";
  /** The KV cache's blocks: as asked, or the count the engine chose for numKvBlocks 0. */
  numKvBlocks: number;
  blockSize: number;
  maxLoras: number;
  /** Bytes of base weights held by this rank. */
  weightBytes: number;
  /** Steps this rank has run (a follower's are its leader's), their wall time, and the part spent in collectives. */
  steps: number;
  stepSeconds: number;
  /** Seconds in the group's all-reduces and all-gathers; 0 where the backend cannot tell (CUDA's NCCL is asynchronous). */
  collectiveSeconds: number;
  /**
   * Seconds between consecutive steps (from one's end to the next one's start), and the part of them before the JS
   * thread had started the next step: what the device waited for the engine loop (the rest is the engine's own host
   * work between steps). A time when the loop had nothing to run is in neither: it ends at resumeFromIdle(), where
   * the next gap starts.
   */
  stepGapSeconds: number;
  loopWaitSeconds: number;
}

export interface NativeEngine {
  info(): EngineInfo;
  /**
   * Runs one batched forward pass off the JS thread. Sequences may use different adapters. Up to two steps may be in
   * flight: they run one after the other in the order started, though their promises may settle in either order.
   */
  step(seqs: SeqStep[]): Promise<SeqResult[]>;
  /** Copies an adapter into a slot (off the JS thread); the slot must be free. */
  loadAdapter(slot: number, adapter: AdapterWeights): Promise<void>;
  /** Frees a slot; no running sequence may still name it. */
  unloadAdapter(slot: number): void;
  /**
   * The engine loop had nothing to run since the last step ended and has work again: the time since that end is
   * idle, not a gap between steps nor a wait for the loop. A leader passes it on to its followers (before the next
   * step), whose gaps then leave it out too.
   */
  resumeFromIdle(): void;
  /**
   * A follower (rank > 0) of a group: runs the leader's steps and adapter loads natively until the leader stops
   * the group (resolves) or the group fails (rejects, naming why). Such an engine takes no other call but info() and close().
   */
  follow(): Promise<void>;
  /**
   * The leader (rank 0) of a group of several: resolves with why the group failed (a rank died or stopped
   * answering), or with a note once close() stops the group. Occupies one libuv worker thread while it waits.
   */
  watchGroup(): Promise<string>;
  /** Releases weights and KV cache; the engine is unusable afterwards. A leader first tells its followers to stop. */
  close(): void;
}

/**
 * AdapterWeights as the binding takes it: every pair's numbers in one Float64Array and each distinct file name once,
 * so the handoff is a few N-API calls instead of several per tensor ref. The order of the numbers is the addon's
 * (contract.packedLayout); the checks of every value are native/src/js_values.cc PackedPairs.
 */
interface PackedAdapter {
  rank: number;
  scaling: number;
  files: string[];
  pairs: Float64Array;
  fileBytes?: Readonly<Record<string, Uint8Array>>;
}

/** The numbers of one adapter so far, and the index of each file name they name. */
interface PackState {
  numbers: number[];
  fileIndex: Map<string, number>;
}

// What cannot be encoded becomes -1 (a file that is not a string, an unknown name, a shape that is not an array) or
// NaN (a non-number): the binding refuses those naming the field, so the checks stay in one place.
const numberOf = (value: unknown) => (typeof value === "number" ? value : Number.NaN);

function fileCode(state: PackState, file: unknown): number {
  if (typeof file !== "string") return -1;
  let index = state.fileIndex.get(file);
  if (index === undefined) state.fileIndex.set(file, (index = state.fileIndex.size));
  return index;
}

/** How each property of a TensorRef becomes numbers; the addon's layout says in which order. */
const TENSOR_REF_PACKERS: Record<keyof TensorRef, (state: PackState, ref: TensorRef) => void> = {
  file: (state, ref) => state.numbers.push(fileCode(state, ref.file)),
  dtype: (state, ref) => state.numbers.push(CONTRACT.dtypeCodes.get(ref.dtype) ?? -1),
  offset: (state, ref) => state.numbers.push(numberOf(ref.offset)),
  nbytes: (state, ref) => state.numbers.push(numberOf(ref.nbytes)),
  shape: (state, ref) => {
    if (!Array.isArray(ref.shape)) {
      state.numbers.push(-1);
      return;
    }
    state.numbers.push(ref.shape.length);
    for (const dim of ref.shape) state.numbers.push(numberOf(dim));
  },
};

function packRef(state: PackState, ref: TensorRef): void {
  for (const field of CONTRACT.packedLayout.tensorRef) TENSOR_REF_PACKERS[field](state, ref);
}

/** How each property of a LoraTensorPair becomes numbers; the addon's layout says in which order. */
const PAIR_PACKERS: Record<keyof LoraTensorPair, (state: PackState, pair: LoraTensorPair) => void> = {
  layer: (state, pair) => state.numbers.push(numberOf(pair.layer)),
  target: (state, pair) => state.numbers.push(CONTRACT.targetCodes.get(pair.target) ?? -1),
  a: (state, pair) => packRef(state, pair.a),
  b: (state, pair) => packRef(state, pair.b),
};

function packAdapter(adapter: AdapterWeights): PackedAdapter {
  const state: PackState = { numbers: [], fileIndex: new Map() };
  const { pair: pairLayout } = CONTRACT.packedLayout;
  for (const pair of adapter.pairs) {
    for (const field of pairLayout) PAIR_PACKERS[field](state, pair);
  }
  const { rank, scaling, fileBytes } = adapter;
  return { rank, scaling, files: [...state.fileIndex.keys()], pairs: new Float64Array(state.numbers), fileBytes };
}

/** The engine class of the binding: NativeEngine, but loadAdapter takes the packed form. */
interface EngineBinding extends Omit<NativeEngine, "loadAdapter"> {
  loadAdapter(slot: number, adapter: PackedAdapter): Promise<void>;
}

/** NativeEngine over the binding: packs each adapter before it crosses. */
class PackingEngine implements NativeEngine {
  // A host-tier adapter is loaded into a slot again each time it comes back: it is packed once.
  private readonly packed = new WeakMap<AdapterWeights, PackedAdapter>();

  constructor(private readonly binding: EngineBinding) {}

  info(): EngineInfo {
    return this.binding.info();
  }

  step(seqs: SeqStep[]): Promise<SeqResult[]> {
    return this.binding.step(seqs);
  }

  // async: a packing error rejects the promise like every other failure of a load.
  async loadAdapter(slot: number, adapter: AdapterWeights): Promise<void> {
    let packed = this.packed.get(adapter);
    if (packed === undefined) this.packed.set(adapter, (packed = packAdapter(adapter)));
    return this.binding.loadAdapter(slot, packed);
  }

  unloadAdapter(slot: number): void {
    this.binding.unloadAdapter(slot);
  }

  resumeFromIdle(): void {
    this.binding.resumeFromIdle();
  }

  async follow(): Promise<void> {
    await this.binding.follow();
  }

  watchGroup(): Promise<string> {
    return this.binding.watchGroup();
  }

  close(): void {
    this.binding.close();
  }
}

/** The tables the addon exports (native/src/contract.h), in the engine's own order and codes. */
export interface NativeContract {
  loraTargets: string[];
  /** Name -> the code a packed adapter carries. */
  dtypes: Record<string, number>;
  /** The order of the numbers of one pair and of one tensor ref in PackedAdapter.pairs. */
  packedLayout: { pair: string[]; tensorRef: string[] };
  /** The instance methods of the Engine class. */
  engineMethods: string[];
}

interface Addon {
  Engine: new (options: EngineOptions) => EngineBinding;
  hasCuda(): boolean;
  /** Per [dtype code, offset, nbytes] triple of spans: the index of the span's first NaN or infinity, or -1. */
  findNonFinite(bytes: Uint8Array, spans: Float64Array): Promise<Float64Array>;
  contract: NativeContract;
}

let cached: Addon | null = null;

function addonPath(): string {
  // This module runs as native/addon.ts (tests) or dist/native/addon.js (built): walk up to the project root.
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("loraserve: cannot find the project root above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return join(dir, "native", "build", "Release", "loraserve_native.node");
}

export function loadAddon(): Addon {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new Error(`native addon not built: ${path} is missing (run \`npm run build:native\`)`);
  }
  cached = createRequire(import.meta.url)(path) as Addon;
  return cached;
}

export function createEngine(options: EngineOptions): NativeEngine {
  return new PackingEngine(new (loadAddon().Engine)(options));
}

/** What differs between two sets of names: each problem names the table and the name. */
function nameMismatches(table: string, native: readonly string[], declared: readonly string[]): string[] {
  const problems = declared.filter((name) => !native.includes(name)).map((name) => `${table} lacks ${name}`);
  for (const name of native) if (!declared.includes(name)) problems.push(`${table} has ${name}, which native/addon.ts does not declare`);
  if (new Set(native).size !== native.length) problems.push(`${table} names something twice`);
  return problems;
}

/**
 * Where the built addon's tables disagree with this file's types: the LoRA targets and dtypes, the properties the
 * packer encodes, and the methods PackingEngine forwards. Empty when they agree.
 */
export function contractMismatches(native: NativeContract): string[] {
  const forwarded = Object.getOwnPropertyNames(PackingEngine.prototype).filter((name) => name !== "constructor");
  return [
    ...nameMismatches("loraTargets", native.loraTargets, Object.keys(LORA_TARGET_NAMES)),
    ...nameMismatches("dtypes", Object.keys(native.dtypes), Object.keys(DTYPE_NAMES)),
    ...nameMismatches("packedLayout.pair", native.packedLayout.pair, Object.keys(PAIR_PACKERS)),
    ...nameMismatches("packedLayout.tensorRef", native.packedLayout.tensorRef, Object.keys(TENSOR_REF_PACKERS)),
    ...nameMismatches("engineMethods", native.engineMethods, forwarded),
  ];
}

/** NativeContract once it is known to agree with this file's types. */
interface Contract {
  loraTargets: readonly LoraTarget[];
  targetCodes: ReadonlyMap<unknown, number>;
  dtypeCodes: ReadonlyMap<unknown, number>;
  packedLayout: { pair: readonly (keyof LoraTensorPair)[]; tensorRef: readonly (keyof TensorRef)[] };
}

function checkedContract(): Contract {
  const native = loadAddon().contract;
  const problems = contractMismatches(native);
  if (problems.length > 0) {
    throw new Error(
      `native addon ${addonPath()} does not match native/addon.ts (rebuild it: npm run build:native): ${problems.join("; ")}`,
    );
  }
  const loraTargets = native.loraTargets as LoraTarget[];
  return {
    loraTargets,
    targetCodes: new Map(loraTargets.map((target, code) => [target, code])),
    dtypeCodes: new Map(Object.entries(native.dtypes)),
    packedLayout: native.packedLayout as Contract["packedLayout"],
  };
}

// Read when this module is imported, so that a stale build fails at once and by name, not at the first adapter load.
const CONTRACT = checkedContract();

/** The seven projections a LoRA adapter may target, in the engine's order (native/src/lora_target.h). */
export const LORA_TARGETS: readonly LoraTarget[] = CONTRACT.loraTargets;

/**
 * For each tensor of `bytes` (a whole safetensors file): the index of its first NaN or infinity, or -1. Scanned off
 * the JS thread (an adapter is megabytes); `bytes` must not change until the promise settles.
 */
export async function findNonFinite(bytes: Uint8Array, tensors: readonly TensorRef[]): Promise<number[]> {
  const spans = new Float64Array(tensors.length * 3);
  tensors.forEach((ref, i) => spans.set([CONTRACT.dtypeCodes.get(ref.dtype) ?? -1, ref.offset, ref.nbytes], i * 3));
  return Array.from(await loadAddon().findNonFinite(bytes, spans));
}

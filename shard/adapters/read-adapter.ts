// An adapter directory → its bytes in host memory, validated against the base model. This is the host tier's
// unit: the engine later loads a slot from these bytes (AdapterWeights.fileBytes) without opening the files
// again, so what was checked here is exactly what runs, whatever happens on disk afterwards.
import { constants, promises as fs } from "node:fs";
import { join } from "node:path";
import type { AdapterWeights, ModelSpec } from "../../native/addon.js";
import { adapterFromFiles, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, type AdapterConfig } from "../model/adapter.js";
import { parseJsonObject } from "../model/config.js";
import { LoadError } from "../model/load-error.js";
import { safetensorsFromBytes } from "../model/safetensors.js";
import { AdapterError } from "./errors.js";
import { assertFiniteWeights } from "./finite-weights.js";
import { assertInside, realpathInside } from "./path-containment.js";

export interface HostAdapter {
  dir: string;
  config: AdapterConfig;
  /** With fileBytes: a slot load reads memory, not the disk. */
  weights: AdapterWeights;
  /** The adapter ships a tokenizer_config.json with its own chat template. */
  hasChatTemplate: boolean;
}

/** What an adapter is checked against. */
export interface AdapterLimits {
  spec: ModelSpec;
  /** The engine slots' rank (--max-lora-rank). */
  maxLoraRank: number;
}

// Files the text layer reads from an adapter's directory later (shard/text/chat-template.ts).
const TOKENIZER_CONFIG_FILE = "tokenizer_config.json";
const JINJA_TEMPLATE_FILE = "chat_template.jinja";
const SPECIAL_TOKENS_FILE = "special_tokens_map.json";

/** The real path of `path` (null when absent), refused when it leads outside `root`; any other failure names the file. */
async function resolveInside(path: string, root: string | null): Promise<string | null> {
  try {
    return await realpathInside(path, root, path);
  } catch (error) {
    if (error instanceof AdapterError) throw error;
    throw new LoadError(path, `cannot resolve: ${(error as Error).message}`);
  }
}

/**
 * Reads `path` whole into memory, or null when it does not exist. With a root, the file must
 * really lie inside it: its real path is checked before it is opened, and the opened file's path again after (a
 * symlink swapped in between cannot lead out).
 */
async function readFileInside(path: string, root: string | null): Promise<Buffer | null> {
  const real = await resolveInside(path, root);
  if (real === null) return null;
  // O_NONBLOCK: a FIFO planted under the name must not hang the open.
  const handle = await fs.open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    if (!(await handle.stat()).isFile()) throw new LoadError(path, "is not a regular file");
    // Linux names the opened file under /proc; elsewhere the check before opening is the only one.
    const opened = await fs.readlink(`/proc/self/fd/${handle.fd}`).catch(() => real);
    assertInside(opened, root, path);
    const size = (await handle.stat()).size;
    const bytes = Buffer.allocUnsafe(size);
    for (let at = 0; at < size; ) {
      const { bytesRead } = await handle.read(bytes, at, size - at, at);
      if (bytesRead === 0) throw new LoadError(path, `ended after ${at} of ${size} bytes (changed while read)`);
      at += bytesRead;
    }
    return bytes;
  } finally {
    await handle.close();
  }
}

/**
 * Reads and validates the adapter in `dir` (a real path); `root` is the root it must stay in, null when the
 * operator named it.
 */
export async function readAdapter(dir: string, root: string | null, limits: AdapterLimits): Promise<HostAdapter> {
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  const weightsPath = join(dir, ADAPTER_WEIGHTS_FILE);
  const tokenizerConfigPath = join(dir, TOKENIZER_CONFIG_FILE);
  // Every file is checked before any is read, the text layer's included: one that leads out means nothing is read.
  const [, , , jinjaTemplate] = await Promise.all(
    [configPath, weightsPath, tokenizerConfigPath, join(dir, JINJA_TEMPLATE_FILE), join(dir, SPECIAL_TOKENS_FILE)].map((path) => resolveInside(path, root)),
  );
  const configText = await readFileInside(configPath, root);
  if (configText === null) throw new LoadError(configPath, "missing: not a PEFT adapter directory");
  const configJson = parseJsonObject(configPath, configText.toString("utf8"));
  const weightBytes = await readFileInside(weightsPath, root);
  if (weightBytes === null) throw new LoadError(weightsPath, "missing (pickle adapter_model.bin is not loaded, convert it to safetensors)");
  const safetensors = safetensorsFromBytes(weightsPath, weightBytes);
  const files = adapterFromFiles(dir, configPath, configJson, safetensors, limits.spec);
  await assertFiniteWeights(weightsPath, weightBytes, safetensors.tensors);
  if (files.config.rank > limits.maxLoraRank) {
    throw new LoadError(configPath, `"r" = ${files.config.rank} exceeds the shard's --max-lora-rank ${limits.maxLoraRank}`);
  }
  const tokenizerConfig = await readFileInside(tokenizerConfigPath, root);
  const configTemplate = tokenizerConfig && parseJsonObject(tokenizerConfigPath, tokenizerConfig.toString("utf8")).chat_template;
  return {
    dir,
    config: files.config,
    weights: { ...files.weights, fileBytes: { [weightsPath]: weightBytes } },
    hasChatTemplate: jinjaTemplate !== null || (configTemplate !== undefined && configTemplate !== null),
  };
}

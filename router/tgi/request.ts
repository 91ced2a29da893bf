// TGI's /generate body → the proto GenerateRequest. Types and ranges the proto cannot carry are checked here
// (a negative count, a seed past 2^53); every other rule (max_new_tokens >= 1, prompt length, adapter ids,
// limits) is the shard's to enforce, for all protocols alike.
import { create } from "@bufbuild/protobuf";
import { GenerateRequestSchema, type GenerateRequest } from "../../gen/loraserve/v1/generate_pb.js";
import { validationError } from "./tgi-error.js";

type JsonObject = Record<string, unknown>;

const UINT32_MAX = 2 ** 32 - 1;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A parameter this server does not implement is refused unless its value asks for nothing (null, false, []). */
function asksForNothing(value: unknown): boolean {
  return value === null || value === false || (Array.isArray(value) && value.length === 0);
}

const SUPPORTED = new Set([
  "adapter_id",
  "max_new_tokens",
  "do_sample",
  "temperature",
  "top_k",
  "top_p",
  "seed",
  "details",
  "decoder_input_details",
  "top_n_tokens",
]);

class Parameters {
  constructor(private readonly values: JsonObject) {}

  private present(name: string): unknown {
    const value = this.values[name];
    return value === null ? undefined : value;
  }

  string(name: string): string | undefined {
    const value = this.present(name);
    if (value !== undefined && typeof value !== "string") throw validationError(`\`${name}\` must be a string`);
    return value;
  }

  boolean(name: string): boolean | undefined {
    const value = this.present(name);
    if (value !== undefined && typeof value !== "boolean") throw validationError(`\`${name}\` must be a boolean`);
    return value;
  }

  number(name: string): number | undefined {
    const value = this.present(name);
    if (value !== undefined && (typeof value !== "number" || !Number.isFinite(value))) {
      throw validationError(`\`${name}\` must be a number`);
    }
    return value;
  }

  integer(name: string, max: number): number | undefined {
    const value = this.present(name);
    if (value !== undefined && (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max)) {
      throw validationError(`\`${name}\` must be an integer from 0 to ${max}`);
    }
    return value;
  }
}

export function toGenerateRequest(body: unknown): GenerateRequest {
  if (!isObject(body)) throw validationError("the body must be a JSON object with `inputs` and `parameters`");
  if (typeof body.inputs !== "string") throw validationError("`inputs` must be a string");
  const raw = body.parameters ?? {};
  if (!isObject(raw)) throw validationError("`parameters` must be an object");
  for (const [name, value] of Object.entries(raw)) {
    if (!SUPPORTED.has(name) && !asksForNothing(value)) throw validationError(`parameter \`${name}\` is not supported`);
  }
  const params = new Parameters(raw);
  const seed = params.integer("seed", Number.MAX_SAFE_INTEGER);
  const temperature = params.number("temperature");
  const topK = params.integer("top_k", UINT32_MAX);
  const topP = params.number("top_p");
  // TGI samples whenever a sampling parameter changes the distribution, even without do_sample.
  const warps = (temperature !== undefined && temperature !== 1) || (topK ?? 0) > 0 || (topP !== undefined && topP < 1);
  return create(GenerateRequestSchema, {
    inputs: body.inputs,
    adapterId: params.string("adapter_id") ?? "",
    parameters: {
      maxNewTokens: params.integer("max_new_tokens", UINT32_MAX),
      doSample: (params.boolean("do_sample") ?? false) || warps,
      temperature,
      topK,
      topP,
      seed: seed === undefined ? undefined : BigInt(seed),
      details: params.boolean("details") ?? false,
      decoderInputDetails: params.boolean("decoder_input_details") ?? false,
      topNTokens: params.integer("top_n_tokens", UINT32_MAX) ?? 0,
    },
  });
}

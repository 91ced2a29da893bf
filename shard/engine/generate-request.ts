// A GenerateRequest off the wire → a SequenceRequest the engine loop can run, or an InvalidRequestError that
// says which field is wrong and what the limit is. All validation of user input happens here, before the
// request reaches the scheduler.
import { randomInt } from "node:crypto";
import type { GenerateRequest } from "../../gen/loraserve/v1/generate_pb.js";
import type { ShardLimits } from "../options.js";
import type { SequenceRequest } from "./sequence.js";

export class InvalidRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidRequestError";
  }
}

export interface RequestContext {
  limits: ShardLimits;
  vocabSize: number;
  encode(text: string): Int32Array;
  /** Throws UnknownAdapterError for an id the shard does not serve. */
  slotFor(adapterId: string): number;
}

export interface PreparedRequest {
  sequence: SequenceRequest;
  /** The seed the sampler uses, reported back to the client; absent for greedy requests. */
  seed: bigint | undefined;
  details: boolean;
  decoderInputDetails: boolean;
}

/** The engine's seed is a JS number: beyond this it would silently lose bits. */
const MAX_SEED = BigInt(Number.MAX_SAFE_INTEGER);
/** Random seeds stay well inside the exact range (randomInt's range is limited to 2^48). */
const RANDOM_SEED_LIMIT = 2 ** 48 - 1;

export function prepareRequest(request: GenerateRequest, context: RequestContext): PreparedRequest {
  const adapterSlot = context.slotFor(request.adapterId);
  const { limits } = context;
  const params = request.parameters;
  const maxNewTokens = params?.maxNewTokens;
  if (maxNewTokens === 0) throw new InvalidRequestError("max_new_tokens must be at least 1");
  if (maxNewTokens !== undefined && maxNewTokens > limits.maxNewTokensLimit) {
    throw new InvalidRequestError(`max_new_tokens must be <= ${limits.maxNewTokensLimit}, got ${maxNewTokens}`);
  }
  const doSample = params?.doSample ?? false;
  const temperature = params?.temperature ?? 1;
  if (!(temperature > 0) || !Number.isFinite(temperature)) throw new InvalidRequestError(`temperature must be > 0, got ${temperature}`);
  const topP = params?.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new InvalidRequestError(`top_p must be in (0, 1], got ${topP}`);
  const topN = params?.topNTokens ?? 0;
  if (topN > context.vocabSize) throw new InvalidRequestError(`top_n_tokens must be <= ${context.vocabSize} (the vocabulary), got ${topN}`);
  if (params?.seed !== undefined && params.seed > MAX_SEED) throw new InvalidRequestError(`seed must be <= ${MAX_SEED}, got ${params.seed}`);
  if (request.inputs === "") throw new InvalidRequestError("inputs must not be empty");

  const promptIds = context.encode(request.inputs);
  if (promptIds.length > limits.maxInputTokens) {
    throw new InvalidRequestError(`inputs is ${promptIds.length} tokens; at most ${limits.maxInputTokens} (max_input_tokens) are accepted`);
  }
  const room = limits.maxTotalTokens - promptIds.length;
  if (maxNewTokens !== undefined && maxNewTokens > room) {
    throw new InvalidRequestError(
      `inputs (${promptIds.length} tokens) + max_new_tokens (${maxNewTokens}) must be <= ${limits.maxTotalTokens} (max_total_tokens)`,
    );
  }
  // Unset asks for the server's default: as much as the context leaves, within the per-request limit.
  const newTokens = maxNewTokens ?? Math.min(limits.maxNewTokensLimit, room);
  const seed = doSample ? (params?.seed ?? BigInt(randomInt(RANDOM_SEED_LIMIT))) : undefined;
  return {
    sequence: {
      promptIds,
      adapterSlot,
      maxNewTokens: newTokens,
      sampling: doSample
        ? { temperature, topK: params?.topK ?? 0, topP, seed: Number(seed) }
        : { temperature: 0, topK: 0, topP: 1, seed: 0 },
      topN,
      promptLogprobs: params?.decoderInputDetails ?? false,
    },
    seed,
    details: params?.details ?? false,
    decoderInputDetails: params?.decoderInputDetails ?? false,
  };
}

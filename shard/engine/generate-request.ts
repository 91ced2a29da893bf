// A GenerateRequest off the wire → a SequenceRequest the engine loop can run, or an InvalidRequestError that
// says which field is wrong and what the limit is. All validation of user input happens here, before the
// request reaches the scheduler.
//
// Sampling: do_sample false is greedy; with do_sample, temperature 0 is greedy too (OpenAI clients send it for
// "deterministic", and TGI's OpenAI routes turn it into greedy), only a negative one is refused. The penalties
// are logits processors, not sampling warpers: they apply in greedy mode as well, as in transformers and TGI.
import { randomInt } from "node:crypto";
import type { GenerateRequest, GenerationParameters } from "../../gen/loraserve/v1/generate_pb.js";
import type { GenerationDefaults } from "../model/generation-defaults.js";
import type { ShardLimits } from "../options.js";
import { ChatTemplateError, type ChatMessage, type ChatTemplate } from "../text/chat-template.js";
import type { PromptEncoder } from "../text/encoder-pool.js";
import { UnencodableTextError } from "../text/tokenizer.js";
import type { SequenceRequest } from "./sequence.js";

export class InvalidRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidRequestError";
  }
}

/** What turning a prompt into tokens needs. */
export interface PromptContext extends PromptEncoder {
  /** The template for requests naming `adapterId` ("" for the base model), null when there is none; throws for an adapter the shard does not know. */
  chatTemplate(adapterId: string): ChatTemplate | null;
  limits: Pick<ShardLimits, "maxInputTokens">;
  /** The most input bytes one token stands for (TextCodec.maxBytesPerToken); null: no bound before tokenizing. */
  maxBytesPerToken: number | null;
}

export interface RequestContext extends PromptContext {
  limits: ShardLimits;
  vocabSize: number;
  /** What a request with sampling_from_model leaves unset takes from the model (generation_config.json). */
  generationDefaults: GenerationDefaults;
}

/** The request's parameters with the model's sampling defaults filled in where it asks for them. */
function withModelDefaults(params: GenerationParameters | undefined, defaults: GenerationDefaults): GenerationParameters | undefined {
  if (!params?.samplingFromModel) return params;
  if (defaults.greedy) return { ...params, doSample: false };
  return {
    ...params,
    temperature: params.temperature ?? defaults.temperature,
    topP: params.topP ?? defaults.topP,
    topK: params.topK ?? defaults.topK,
  };
}

export interface PreparedRequest {
  sequence: SequenceRequest;
  /** The prompt as text: `inputs`, or what the chat template rendered. */
  promptText: string;
  /** The seed the sampler uses, reported back to the client; absent for greedy requests. */
  seed: bigint | undefined;
  details: boolean;
  decoderInputDetails: boolean;
  /** Text that ends generation; it is cut from the text. */
  stop: string[];
  /** generated_text starts with the prompt text. */
  returnFullText: boolean;
}

/** What a prompt is given as: the fields GenerateRequest and TokenizeRequest share. */
export interface PromptInput {
  inputs: string;
  messages: readonly ChatMessage[];
  adapterId: string;
}

/** The engine's seed is a JS number: beyond this it would silently lose bits. */
const MAX_SEED = BigInt(Number.MAX_SAFE_INTEGER);
/** Random seeds stay well inside the exact range (randomInt's range is limited to 2^48). */
const RANDOM_SEED_LIMIT = 2 ** 48 - 1;
/** Every stop sequence is searched for after every token: keep that work small. */
const MAX_STOP_SEQUENCES = 8;
const MAX_STOP_LENGTH = 256;
/** OpenAI's range for frequency_penalty and presence_penalty. */
const MAX_ABS_PENALTY = 2;

/** The text, as `inputs` or rendered from `messages`, and whether the tokenizer adds BOS/EOS to it. */
async function promptTextOf(input: PromptInput, context: PromptContext): Promise<{ text: string; addSpecialTokens: boolean }> {
  if (input.messages.length === 0) {
    if (input.inputs === "") throw new InvalidRequestError("inputs must not be empty");
    return { text: input.inputs, addSpecialTokens: true };
  }
  if (input.inputs !== "") throw new InvalidRequestError("give either inputs or messages, not both");
  input.messages.forEach((message, i) => {
    if (message.role === "") throw new InvalidRequestError(`messages[${i}].role must not be empty`);
  });
  const template = context.chatTemplate(input.adapterId);
  if (template === null) {
    const whose = input.adapterId === "" ? "the model" : `neither adapter ${JSON.stringify(input.adapterId)} nor the model`;
    throw new InvalidRequestError(`${whose} has no chat template (chat_template in tokenizer_config.json): send inputs instead of messages`);
  }
  try {
    return { text: await context.render(template, input.messages), addSpecialTokens: false };
  } catch (error) {
    if (error instanceof ChatTemplateError) throw new InvalidRequestError(error.message);
    throw error;
  }
}

/** Refuses, from its byte length alone, a text that cannot fit max_input_tokens (see text/bytes-per-token.ts). */
function refuseSurelyTooLong(text: string, context: PromptContext): void {
  if (context.maxBytesPerToken === null) return;
  const bytes = Buffer.byteLength(text, "utf8");
  const fewest = Math.ceil(bytes / context.maxBytesPerToken);
  const { maxInputTokens } = context.limits;
  if (fewest > maxInputTokens) {
    throw new InvalidRequestError(
      `inputs is ${bytes} bytes, so at least ${fewest} tokens (no token of this tokenizer spans more than ${context.maxBytesPerToken} bytes); ` +
        `at most ${maxInputTokens} (max_input_tokens) are accepted`,
    );
  }
}

/**
 * The prompt's text and ids: `inputs` encoded as the tokenizer's post-processor says (BOS added), or `messages`
 * rendered with the chat template and encoded without adding special tokens (the template writes them), as
 * transformers' apply_chat_template does. A prompt longer than max_input_tokens is refused, before it is
 * tokenized when its byte length already says so.
 */
export async function encodePrompt(input: PromptInput, context: PromptContext): Promise<{ text: string; ids: Int32Array }> {
  const { text, addSpecialTokens } = await promptTextOf(input, context);
  refuseSurelyTooLong(text, context);
  const ids = await context.encode(text, { addSpecialTokens }).catch((error: unknown) => {
    throw error instanceof UnencodableTextError ? new InvalidRequestError(error.message) : error;
  });
  const { maxInputTokens } = context.limits;
  if (ids.length > maxInputTokens) {
    throw new InvalidRequestError(`inputs is ${ids.length} tokens; at most ${maxInputTokens} (max_input_tokens) are accepted`);
  }
  return { text, ids };
}

/** The sampling and penalty fields, checked; throws InvalidRequestError naming the first bad one. */
function samplingOf(params: GenerationParameters | undefined, seed: bigint | undefined): SequenceRequest["sampling"] {
  const temperature = params?.temperature ?? 1;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new InvalidRequestError(`temperature must be >= 0 (0 is greedy), got ${temperature}`);
  const topP = params?.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new InvalidRequestError(`top_p must be in (0, 1], got ${topP}`);
  const typicalP = params?.typicalP ?? 1;
  if (!(typicalP > 0 && typicalP <= 1)) throw new InvalidRequestError(`typical_p must be in (0, 1] (1 is no cut), got ${typicalP}`);
  const repetitionPenalty = params?.repetitionPenalty ?? 1;
  if (!(repetitionPenalty > 0) || !Number.isFinite(repetitionPenalty)) {
    throw new InvalidRequestError(`repetition_penalty must be > 0 (1 is none), got ${repetitionPenalty}`);
  }
  const frequencyPenalty = params?.frequencyPenalty ?? 0;
  const presencePenalty = params?.presencePenalty ?? 0;
  for (const [name, value] of [["frequency_penalty", frequencyPenalty], ["presence_penalty", presencePenalty]] as const) {
    if (!(Math.abs(value) <= MAX_ABS_PENALTY)) throw new InvalidRequestError(`${name} must be in [-${MAX_ABS_PENALTY}, ${MAX_ABS_PENALTY}], got ${value}`);
  }
  const penalties = { repetitionPenalty, frequencyPenalty, presencePenalty };
  // A top_k of 0 (unset) means no cut; the proto's uint32 cannot carry a negative one.
  if (seed === undefined || temperature === 0) return { temperature: 0, topK: 0, topP: 1, seed: 0, ...penalties };
  return { temperature, topK: params?.topK ?? 0, topP, typicalP, seed: Number(seed), ...penalties };
}

function stopSequencesOf(params: GenerationParameters | undefined): string[] {
  const stop = params?.stop ?? [];
  if (stop.length > MAX_STOP_SEQUENCES) throw new InvalidRequestError(`at most ${MAX_STOP_SEQUENCES} stop sequences are accepted, got ${stop.length}`);
  stop.forEach((sequence, i) => {
    if (sequence === "") throw new InvalidRequestError(`stop[${i}] must not be empty`);
    const length = [...sequence].length;
    if (length > MAX_STOP_LENGTH) throw new InvalidRequestError(`stop[${i}] is ${length} characters; at most ${MAX_STOP_LENGTH} are accepted`);
  });
  return [...stop];
}

export async function prepareRequest(request: GenerateRequest, context: RequestContext): Promise<PreparedRequest> {
  const { limits } = context;
  const params = withModelDefaults(request.parameters, context.generationDefaults);
  const maxNewTokens = params?.maxNewTokens;
  if (maxNewTokens === 0) throw new InvalidRequestError("max_new_tokens must be at least 1");
  if (maxNewTokens !== undefined && maxNewTokens > limits.maxNewTokensLimit) {
    throw new InvalidRequestError(`max_new_tokens must be <= ${limits.maxNewTokensLimit}, got ${maxNewTokens}`);
  }
  const doSample = params?.doSample ?? false;
  if (params?.seed !== undefined && params.seed > MAX_SEED) throw new InvalidRequestError(`seed must be <= ${MAX_SEED}, got ${params.seed}`);
  const seed = doSample ? (params?.seed ?? BigInt(randomInt(RANDOM_SEED_LIMIT))) : undefined;
  const sampling = samplingOf(params, seed);
  const topN = params?.topNTokens ?? 0;
  // Each generated token carries top_n_tokens alternatives: the cap bounds what one small request can make the server send.
  if (topN > limits.maxTopNTokens) {
    throw new InvalidRequestError(`top_n_tokens (OpenAI: logprobs, top_logprobs) must be <= ${limits.maxTopNTokens} (--max-top-n-tokens), got ${topN}`);
  }
  if (topN > context.vocabSize) throw new InvalidRequestError(`top_n_tokens must be <= ${context.vocabSize} (the vocabulary), got ${topN}`);
  const stop = stopSequencesOf(params);

  const prompt = await encodePrompt(request, context);
  const promptIds = prompt.ids;
  const room = limits.maxTotalTokens - promptIds.length;
  if (maxNewTokens !== undefined && maxNewTokens > room) {
    throw new InvalidRequestError(
      `inputs (${promptIds.length} tokens) + max_new_tokens (${maxNewTokens}) must be <= ${limits.maxTotalTokens} (max_total_tokens)`,
    );
  }
  // Unset asks for the server's default: as much as the context leaves, within the per-request limit.
  const newTokens = maxNewTokens ?? Math.min(limits.maxNewTokensLimit, room);
  return {
    sequence: {
      promptIds,
      adapterId: request.adapterId,
      maxNewTokens: newTokens,
      sampling,
      topN,
      promptLogprobs: params?.decoderInputDetails ?? false,
      ignoreEos: params?.ignoreEos ?? false,
    },
    promptText: prompt.text,
    // A greedy request reports no seed, even with temperature 0 under do_sample: nothing was drawn.
    seed: sampling.temperature === 0 ? undefined : seed,
    details: params?.details ?? false,
    decoderInputDetails: params?.decoderInputDetails ?? false,
    stop,
    returnFullText: params?.returnFullText ?? false,
  };
}

// The fields /v1/completions and /v1/chat/completions share → GenerationParameters, after OpenAI's meanings:
// temperature 0 is greedy and anything else samples (OpenAI samples by default), `n` must be 1, `stop` is a
// string or a list. Types are checked here; values (temperature < 0, top_p outside (0, 1], penalties) are the
// shard's to refuse.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GenerationParametersSchema } from "../../gen/loraserve/v1/generate_pb.js";
import { isJsonObject, JsonFields, UINT32_MAX } from "../json-fields.js";
import { invalidField } from "./openai-error.js";

export type ParametersInit = MessageInitShape<typeof GenerationParametersSchema>;

const SHARED_FIELDS = [
  "model",
  "stream",
  "stream_options",
  "temperature",
  "top_p",
  "n",
  "seed",
  "stop",
  "max_tokens",
  "presence_penalty",
  "frequency_penalty",
  "logprobs",
  // vLLM's extension: generate past EOS, up to max_tokens or a stop sequence (benchmarks of a fixed output length).
  "ignore_eos",
  // An end-user id for abuse monitoring: meaningful to OpenAI only, accepted and left unused.
  "user",
];

export interface OpenAiRequest {
  fields: JsonFields;
  model: string;
  stream: boolean;
  /** stream_options.include_usage: a last chunk with the token counts. */
  includeUsage: boolean;
  parameters: ParametersInit;
}

export function readOpenAiRequest(body: unknown, endpointFields: readonly string[]): OpenAiRequest {
  if (!isJsonObject(body)) throw invalidField("body", "the body must be a JSON object");
  const fields = new JsonFields(body, invalidField);
  fields.refuseUnknown(new Set([...SHARED_FIELDS, ...endpointFields]));
  const model = fields.string("model");
  if (!model) throw invalidField("model", "`model` is required: the base model id or an adapter id (GET /v1/models lists them)");
  const n = fields.integer("n", 1, UINT32_MAX);
  if (n !== undefined && n !== 1) throw invalidField("n", "`n` must be 1: one choice is generated per request");
  const stream = fields.boolean("stream") ?? false;
  const streamOptions = fields.object("stream_options");
  if (streamOptions && !stream) throw invalidField("stream_options", "`stream_options` is only allowed when `stream` is true");
  const temperature = fields.float32("temperature");
  const seed = fields.integer("seed", 0, Number.MAX_SAFE_INTEGER);
  return {
    fields,
    model,
    stream,
    includeUsage: streamOptions?.boolean("include_usage") ?? false,
    parameters: {
      maxNewTokens: fields.integer("max_tokens", 0, UINT32_MAX),
      doSample: temperature !== 0,
      temperature: temperature === 0 ? undefined : temperature,
      // No temperature: the model's generation_config.json decides (greedy where it says do_sample false).
      samplingFromModel: temperature === undefined,
      topP: fields.float32("top_p"),
      seed: seed === undefined ? undefined : BigInt(seed),
      stop: fields.strings("stop", { orString: true }) ?? [],
      presencePenalty: fields.float32("presence_penalty"),
      frequencyPenalty: fields.float32("frequency_penalty"),
      ignoreEos: fields.boolean("ignore_eos") ?? false,
    },
  };
}

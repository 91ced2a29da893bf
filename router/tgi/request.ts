// TGI's request bodies → proto requests. TGI's `parameters` (text-generation-inference router/src/lib.rs,
// GenerateParameters) map one to one onto GenerationParameters; the ranges are the shard's to enforce.
import { create } from "@bufbuild/protobuf";
import { GenerateRequestSchema, TokenizeRequestSchema, type GenerateRequest, type TokenizeRequest } from "../../gen/loraserve/v1/generate_pb.js";
import { isJsonObject, JsonFields, UINT32_MAX } from "../json-fields.js";
import { validationError } from "./tgi-error.js";

const SUPPORTED = new Set([
  "adapter_id",
  "best_of",
  "max_new_tokens",
  "do_sample",
  "temperature",
  "top_k",
  "top_p",
  "typical_p",
  "repetition_penalty",
  "frequency_penalty",
  "seed",
  "stop",
  "return_full_text",
  "details",
  "decoder_input_details",
  "top_n_tokens",
  // Not TGI's: vLLM's name for generating past EOS, so one load generator's requests work on either API.
  "ignore_eos",
]);

interface TgiBody {
  inputs: string;
  parameters: JsonFields;
  /** TGI's `POST /` chooses between /generate and /generate_stream by it. */
  stream: boolean;
}

function parseTgiBody(body: unknown): TgiBody {
  if (!isJsonObject(body)) throw validationError("the body must be a JSON object with `inputs` and `parameters`");
  const top = new JsonFields(body, (_, message) => validationError(message));
  const inputs = top.string("inputs");
  if (inputs === undefined) throw validationError("`inputs` must be a string");
  const parameters = top.object("parameters") ?? new JsonFields({}, (_, message) => validationError(message));
  parameters.refuseUnknown(SUPPORTED);
  return { inputs, parameters, stream: top.boolean("stream") ?? false };
}

export function wantsStream(body: unknown): boolean {
  return parseTgiBody(body).stream;
}

export function toGenerateRequest(body: unknown): GenerateRequest {
  const { inputs, parameters: params } = parseTgiBody(body);
  const bestOf = params.integer("best_of", 1, UINT32_MAX);
  if (bestOf !== undefined && bestOf > 1) throw validationError("`best_of` must be 1: one sequence is generated per request");
  const seed = params.integer("seed", 0, Number.MAX_SAFE_INTEGER);
  const temperature = params.float32("temperature");
  const topK = params.integer("top_k", 0, UINT32_MAX);
  const topP = params.float32("top_p");
  const typicalP = params.float32("typical_p");
  // TGI samples whenever a warper changes the distribution, even without do_sample.
  const warps =
    (temperature !== undefined && temperature !== 1) ||
    (topK ?? 0) > 0 ||
    (topP !== undefined && topP < 1) ||
    (typicalP !== undefined && typicalP < 1);
  return create(GenerateRequestSchema, {
    inputs,
    adapterId: params.string("adapter_id") ?? "",
    parameters: {
      maxNewTokens: params.integer("max_new_tokens", 0, UINT32_MAX),
      doSample: (params.boolean("do_sample") ?? false) || warps,
      temperature,
      topK,
      topP,
      typicalP,
      repetitionPenalty: params.float32("repetition_penalty"),
      frequencyPenalty: params.float32("frequency_penalty"),
      seed: seed === undefined ? undefined : BigInt(seed),
      stop: params.strings("stop") ?? [],
      returnFullText: params.boolean("return_full_text") ?? false,
      details: params.boolean("details") ?? false,
      decoderInputDetails: params.boolean("decoder_input_details") ?? false,
      topNTokens: params.integer("top_n_tokens", 0, UINT32_MAX) ?? 0,
      ignoreEos: params.boolean("ignore_eos") ?? false,
    },
  });
}

/** /tokenize takes the same body as /generate; of the parameters only adapter_id matters. */
export function toTokenizeRequest(body: unknown): TokenizeRequest {
  const { inputs, parameters } = parseTgiBody(body);
  return create(TokenizeRequestSchema, { inputs, adapterId: parameters.string("adapter_id") ?? "" });
}

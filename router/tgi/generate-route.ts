// TGI's generation endpoints: POST /generate (one JSON answer), POST /generate_stream (server-sent events)
// and POST /, which picks one of the two by the body's `stream`.
import type { GenerateRequest } from "../../gen/loraserve/v1/generate_pb.js";
import { collectGeneration } from "../collect.js";
import type { Exchange } from "../http-route.js";
import { sendJson } from "../json-response.js";
import { sendEventStream } from "../sse.js";
import { toGenerateRequest, wantsStream } from "./request.js";
import { toTgiResponse } from "./response.js";
import { tgiStreamEvents } from "./stream-response.js";
import { tgiErrorOf, tgiRoute, validationError } from "./tgi-error.js";

async function generate({ pool, signal, response }: Exchange, request: GenerateRequest): Promise<void> {
  const answer = await collectGeneration(pool.generate(request, { signal }));
  sendJson(response, 200, toTgiResponse(request, answer));
}

async function generateStream({ pool, signal, response }: Exchange, request: GenerateRequest): Promise<void> {
  // TGI's rule: the prompt's details only come with the whole answer.
  if (request.parameters?.decoderInputDetails) throw validationError("`decoder_input_details` is not supported when streaming");
  const messages = pool.generate(request, { signal });
  await sendEventStream(response, tgiStreamEvents(messages), { signal, errorEvent: (err) => tgiErrorOf(err).body() });
}

export const generateRoute = tgiRoute(async (exchange) => generate(exchange, toGenerateRequest(await exchange.body())));

export const generateStreamRoute = tgiRoute(async (exchange) => generateStream(exchange, toGenerateRequest(await exchange.body())));

export const compatGenerateRoute = tgiRoute(async (exchange) => {
  const body = await exchange.body();
  const request = toGenerateRequest(body);
  return wantsStream(body) ? generateStream(exchange, request) : generate(exchange, request);
});

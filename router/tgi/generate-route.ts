// POST /generate, TGI's non-streaming endpoint.
import { collectGeneration } from "../collect.js";
import { sendJson } from "../json-response.js";
import type { NodeRequest, NodeResponse } from "../node-handler.js";
import { BodyTooLargeError, readBody } from "../read-body.js";
import type { ShardPool } from "../shard-pool.js";
import { toGenerateRequest } from "./request.js";
import { toTgiResponse } from "./response.js";
import { TgiError, tgiErrorOf } from "./tgi-error.js";

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new TgiError(400, "validation", `the body is not valid JSON: ${(err as Error).message}`);
  }
}

export async function generateRoute(request: NodeRequest, response: NodeResponse, pool: ShardPool, maxBodyBytes: number): Promise<void> {
  // The client going away cancels the shard's work for it.
  const abort = new AbortController();
  response.once("close", () => abort.abort());
  try {
    const generateRequest = toGenerateRequest(parseJson(await readBody(request, maxBodyBytes)));
    const shardStream = pool.pick(generateRequest).generate(generateRequest, { signal: abort.signal });
    sendJson(response, 200, toTgiResponse(generateRequest, await collectGeneration(shardStream)));
  } catch (err) {
    const error = err instanceof BodyTooLargeError ? new TgiError(413, "validation", err.message) : tgiErrorOf(err);
    if (!response.headersSent) sendJson(response, error.status, error.body());
  }
}

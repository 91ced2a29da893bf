// Every 503 and 429 the router answers carries `retry-after`, whichever protocol wrote it: TGI's and OpenAI's
// routes, /health, and Connect's HTTP mapping of UNAVAILABLE and RESOURCE_EXHAUSTED. A client (or a load
// balancer) then knows when asking again is worth it: the router sees a shard come back within one status
// poll, and a shard at its admission limits (shard/engine/admission.ts) frees room as requests finish.
import type { NodeHandler, NodeResponse } from "./node-handler.js";
import { STATUS_POLL } from "./status-watcher.js";

const RETRY_AFTER_SECONDS = String(Math.ceil(STATUS_POLL.periodMs / 1000));

/** Unavailable (503) and overloaded (429). */
const RETRYABLE_STATUSES = new Set([503, 429]);

function addRetryAfter(response: NodeResponse): void {
  const writeHead = response.writeHead;
  // Node's http and http2 compat responses both send their headers through writeHead, the implicit case included.
  response.writeHead = function (this: NodeResponse, ...args: Parameters<typeof writeHead>) {
    if (RETRYABLE_STATUSES.has(args[0]) && !response.hasHeader("retry-after")) response.setHeader("retry-after", RETRY_AFTER_SECONDS);
    return Reflect.apply(writeHead, this, args) as ReturnType<typeof writeHead>;
  } as typeof writeHead;
}

export function withRetryAfter(handler: NodeHandler): NodeHandler {
  return (request, response) => {
    addRetryAfter(response);
    handler(request, response);
  };
}

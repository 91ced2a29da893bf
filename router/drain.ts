// The router's graceful drain (SIGTERM, as Kubernetes stops a pod): it stops admitting at once (new requests
// are answered 503, which withRetryAfter gives a `retry-after`; gRPC clients read that 503 as UNAVAILABLE, and
// grpc.health.v1 turns NOT_SERVING), lets the requests in flight finish within the grace period, then ends the
// rest with a final error (an SSE error event, a gRPC status) rather than a cut connection.
// Probes and scrapes (gRPC health, reflection, /metrics) are neither refused nor waited for: a Watch stream
// would otherwise hold the drain for the whole grace period.
import { Code, ConnectError } from "@connectrpc/connect";
import { sendJson } from "./json-response.js";
import type { NodeHandler, NodeRequest } from "./node-handler.js";

/** How long the requests ended after the grace period may take to send their final error. */
const FINAL_ERROR_MS = 5_000;
const PROBE_PATHS = ["/grpc.health.v1.Health/", "/grpc.reflection.", "/metrics"];

function isProbe(request: NodeRequest): boolean {
  const url = request.url ?? "/";
  return PROBE_PATHS.some((path) => url.startsWith(path));
}

/** The error that ends a stream still running when the grace period is over. */
export function shutdownError(): ConnectError {
  return new ConnectError("the server is shutting down and the request ran past its grace period; retry it", Code.Unavailable);
}

/**
 * `stream` until it ends or `signal` aborts; then the shutdown error, which comes at once (the stream's own
 * error, if the abort also cancels it, would come later and say less).
 */
export async function* endOnAbort<T>(stream: AsyncIterable<T>, signal: AbortSignal): AsyncIterable<T> {
  const iterator = stream[Symbol.asyncIterator]();
  let stopListening = (): void => undefined;
  const aborted = new Promise<never>((_, reject) => {
    const fail = (): void => reject(shutdownError());
    if (signal.aborted) fail();
    signal.addEventListener("abort", fail, { once: true });
    stopListening = () => signal.removeEventListener("abort", fail);
  });
  aborted.catch(() => undefined);
  try {
    for (;;) {
      const next = await Promise.race([iterator.next(), aborted]);
      if (next.done) return;
      yield next.value;
    }
  } finally {
    stopListening();
    void iterator.return?.()?.catch(() => undefined);
  }
}

export class Drain {
  private inFlight = 0;
  private draining = false;
  private wakeIdle: (() => void)[] = [];

  /** Counts what `handler` serves, and refuses it with 503 once draining. */
  admit(handler: NodeHandler): NodeHandler {
    return (request, response) => {
      if (isProbe(request)) return handler(request, response);
      if (this.draining) {
        request.resume();
        sendJson(response, 503, { error: "the server is shutting down; retry on another replica", error_type: "unavailable" });
        return;
      }
      this.inFlight += 1;
      response.once("close", () => {
        this.inFlight -= 1;
        if (this.inFlight === 0) for (const wake of this.wakeIdle.splice(0)) wake();
      });
      handler(request, response);
    };
  }

  /**
   * Stops admitting, waits up to `graceMs` for the requests in flight, then calls `endRest` (which ends them
   * with a final error) and waits for them to send it.
   */
  async drain(graceMs: number, endRest: () => void): Promise<void> {
    this.draining = true;
    if (await this.idleWithin(graceMs)) return;
    endRest();
    await this.idleWithin(FINAL_ERROR_MS);
  }

  private idleWithin(ms: number): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.wakeIdle.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}

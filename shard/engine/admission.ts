// Admission control, TGI's way: a shard takes a bounded number of requests (queued or running) and a bounded
// backlog of prompt tokens not yet scheduled. A request past either bound is refused at once, so that the
// client can go elsewhere or come back (the router answers 429 with retry-after), rather than wait in a queue
// that grows without end. A request once admitted is never dropped for load: preemption sends it back to the
// queue, it is not refused again.

export interface AdmissionLimits {
  /** Most requests queued or running at once (--max-concurrent-requests). */
  maxConcurrentRequests: number;
  /** Most prompt tokens waiting to be scheduled (--max-queued-tokens). */
  maxQueuedTokens: number;
}

/** What the engine holds when a new request arrives. */
export interface AdmissionLoad {
  /** Requests queued or running. */
  admitted: number;
  /** Prompt tokens of the queued ones. */
  queuedTokens: number;
}

export class OverloadedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OverloadedError";
  }
}

/** Throws OverloadedError when a request of `promptTokens` would take the shard past a limit. */
export function checkAdmission(limits: AdmissionLimits, load: AdmissionLoad, promptTokens: number): void {
  if (load.admitted >= limits.maxConcurrentRequests) {
    throw new OverloadedError(`the shard is at its limit of ${limits.maxConcurrentRequests} concurrent requests; try again later`);
  }
  if (load.queuedTokens + promptTokens > limits.maxQueuedTokens) {
    throw new OverloadedError(
      `the shard's queue holds ${load.queuedTokens} prompt tokens; ${promptTokens} more would pass its limit of ${limits.maxQueuedTokens}; try again later`,
    );
  }
}

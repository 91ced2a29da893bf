// Admission control, TGI's way: a shard takes a bounded number of requests (queued or running) and a bounded
// backlog of prompt tokens not yet scheduled. A request past either bound is refused at once, so that the
// client can go elsewhere or come back (the router answers 429 with retry-after), rather than wait in a queue
// that grows without end. A request once admitted is never dropped for load: preemption sends it back to the
// queue, it is not refused again.
//
// Both bounds are shared by every adapter, so a flood on one adapter would fill them and leave every other
// adapter refused. An adapter holding less than its fair share of the admitted requests while others hold some
// (the request bound over the adapters that hold requests, its own counted) may go past both bounds by a
// headroom of an eighth: the
// flood is refused at the bound, the others still get in, and the shard never holds more than the bounds plus
// that headroom. The fair queue (fair-queue.ts) then schedules them ahead of the flood's backlog.

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
  /** Requests queued or running by adapter id ("" the base model); adapters holding none may be absent. */
  admittedByAdapter: ReadonlyMap<string, number>;
}

export class OverloadedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OverloadedError";
  }
}

/** What an adapter below its fair share may take past a bound: an eighth of it, at least one request or token. */
export function fairnessHeadroom(bound: number): number {
  return Math.max(1, Math.ceil(bound / 8));
}

/**
 * Whether `adapterId` holds less than its fair share of the request bound while another adapter holds requests
 * too (an adapter alone has no one to be treated fairly against: the bounds are all its own).
 */
export function belowFairShare(limits: AdmissionLimits, load: AdmissionLoad, adapterId: string): boolean {
  const others = [...load.admittedByAdapter].filter(([id, count]) => id !== adapterId && count > 0).length;
  return others > 0 && (load.admittedByAdapter.get(adapterId) ?? 0) < limits.maxConcurrentRequests / (others + 1);
}

/** Throws OverloadedError when a request of `promptTokens` for `adapterId` would take the shard past a limit. */
export function checkAdmission(limits: AdmissionLimits, load: AdmissionLoad, adapterId: string, promptTokens: number): void {
  const fair = belowFairShare(limits, load, adapterId);
  const extra = (bound: number): number => (fair ? fairnessHeadroom(bound) : 0);
  const headroomNote = (bound: number): string => (fair ? ` and the headroom of ${extra(bound)} for adapters below their fair share` : "");
  if (load.admitted >= limits.maxConcurrentRequests + extra(limits.maxConcurrentRequests)) {
    throw new OverloadedError(
      `the shard is at its limit of ${limits.maxConcurrentRequests} concurrent requests${headroomNote(limits.maxConcurrentRequests)}; try again later`,
    );
  }
  if (load.queuedTokens + promptTokens > limits.maxQueuedTokens + extra(limits.maxQueuedTokens)) {
    throw new OverloadedError(
      `the shard's queue holds ${load.queuedTokens} prompt tokens; ${promptTokens} more would pass its limit of ${limits.maxQueuedTokens}${headroomNote(limits.maxQueuedTokens)}; try again later`,
    );
  }
}

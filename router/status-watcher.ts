// The one owner of what the router knows of a shard group: it asks the group's leader for its Status on a
// period and keeps the last answer. Health, metrics, model lookup and routing read that view; none of them asks
// the shard itself, so a reader (a /metrics scrape) never changes routing. A group that stops answering is
// asked again less often (doubling up to a bound), but is seen as down at its first unanswered poll (refused, or
// not answered within answerTimeoutMs).
import type { StatusResponse } from "../gen/loraserve/v1/shard_pb.js";
import type { ShardClient } from "./shard-client.js";

/** The part of a shard client the watcher uses. */
export type StatusSource = Pick<ShardClient, "status">;

export interface WatchTimings {
  /** Between answered polls. */
  periodMs: number;
  /**
   * How long one poll may take before the group counts as not answering. Longer than the period: a shard busy
   * with a burst of work (a large prompt being refused, a loaded machine) answers late but is not down; a shard
   * that is gone refuses the connection at once and is seen down without waiting for this.
   */
  answerTimeoutMs: number;
  /** The longest wait between polls of a group that does not answer. */
  maxBackoffMs: number;
}

/** The health poll's period of old: a group going down is seen within it, as before. */
export const STATUS_POLL: WatchTimings = { periodMs: 1000, answerTimeoutMs: 3000, maxBackoffMs: 4000 };

export class StatusWatcher {
  private last: StatusResponse | undefined;
  private viewed = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private delayMs: number;
  private readonly firstPoll: Promise<void>;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly source: StatusSource,
    private readonly timings: WatchTimings = STATUS_POLL,
  ) {
    this.delayMs = timings.periodMs;
    // The first poll starts now, so a request that arrives with the router finds (or awaits) a view.
    this.firstPoll = this.poll();
  }

  /** The last Status; undefined before the first answer and while the group does not answer. */
  get status(): StatusResponse | undefined {
    return this.last;
  }

  /** False until the first poll ended (answered or not). */
  get hasView(): boolean {
    return this.viewed;
  }

  /** Resolves once the first poll has ended. */
  firstView(): Promise<void> {
    return this.firstPoll;
  }

  /** A request to the group failed: it counts as down until its next answer. */
  markDown(): void {
    this.update(undefined);
  }

  /** Calls listener after every poll and every markDown; returns the function that stops the calls. */
  onView(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async poll(): Promise<void> {
    const status = await this.source.status({}, { timeoutMs: this.timings.answerTimeoutMs }).catch(() => undefined);
    if (this.stopped) return;
    this.delayMs = status ? this.timings.periodMs : Math.min(this.delayMs * 2, this.timings.maxBackoffMs);
    this.update(status);
    this.timer = setTimeout(() => void this.poll(), this.delayMs);
    // The poll alone must not keep the router process alive.
    this.timer.unref();
  }

  private update(status: StatusResponse | undefined): void {
    this.last = status;
    this.viewed = true;
    for (const listener of this.listeners) listener();
  }
}

// The Generate calls a router may cancel by id (ShardService.Cancel, shard.proto): each call registers the id
// the router sent in its `loraserve-call-id` header and gets a signal that Cancel aborts. A Cancel can overtake
// its call (both travel on one connection, but the call first waits for its adapter and its prompt's encoding),
// so an id that is not running yet is remembered for a while and its call is cancelled as it arrives.
import { CALL_ID_HEADER } from "../common/call-id.js";

/** How long an id cancelled before its call arrived is remembered. */
const EARLY_CANCEL_MS = 60_000;
/** At most this many early cancels are remembered: a router sending ids that never come cannot grow the map. */
const MAX_EARLY_CANCELS = 100_000;

export class Cancellations {
  private readonly running = new Map<string, AbortController>();
  /** Ids cancelled before their call registered, with when; oldest first (a Map keeps insertion order). */
  private readonly early = new Map<string, number>();

  /**
   * The signal that Cancel aborts for the call these headers name, and the function that forgets the call once it
   * ended; a call without an id gets a signal that never aborts.
   */
  register(headers: Headers): { signal: AbortSignal; done(): void } {
    const id = headers.get(CALL_ID_HEADER);
    const controller = new AbortController();
    if (id === null || id === "") return { signal: controller.signal, done: () => undefined };
    if (this.early.delete(id)) controller.abort();
    else this.running.set(id, controller);
    return { signal: controller.signal, done: () => this.running.get(id) === controller && this.running.delete(id) };
  }

  /** Cancels the calls with these ids; returns how many were running. */
  cancel(ids: readonly string[]): number {
    const now = Date.now();
    this.forgetExpired(now);
    let cancelled = 0;
    for (const id of ids) {
      if (id === "") continue;
      const controller = this.running.get(id);
      if (controller) {
        this.running.delete(id);
        controller.abort();
        cancelled++;
      } else if (this.early.size < MAX_EARLY_CANCELS) {
        this.early.set(id, now);
      }
    }
    return cancelled;
  }

  private forgetExpired(now: number): void {
    for (const [id, at] of this.early) {
      if (now - at < EARLY_CANCEL_MS) break;
      this.early.delete(id);
    }
  }
}

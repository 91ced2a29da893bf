// Generate calls to a shard group that are cancelled by a message, never by resetting their stream. Every call
// carries a call id (common/call-id.ts); when its client goes away, the router sends the id in a Cancel (the
// ids of one event-loop turn in one call) and reads the shard's stream on to its CANCELED end, discarding it.
// A reset per cancellation would count against the shard's RST_STREAM rate limit, and a storm of cancels would
// make the shard close the one HTTP/2 session that every other request to it shares (shard.proto says more).
// The stream is reset only where the message cannot work: the Cancel failed, or the shard did not end the
// stream within CANCEL_GRACE_MS.
import { randomUUID } from "node:crypto";
import { CALL_ID_HEADER } from "../common/call-id.js";
import type { GenerateStreamResponse } from "../gen/loraserve/v1/generate_pb.js";
import type { ShardClient } from "./shard-client.js";

/** How long a cancelled call's stream may take to end before it is reset after all. */
const CANCEL_GRACE_MS = 10_000;
/** How long one Cancel call may take. */
const CANCEL_TIMEOUT_MS = 5_000;

/** A group's Generate, as the generated client calls it. */
export type GenerateCall = ShardClient["generate"];

/** Gathers the ids cancelled in one event-loop turn into one Cancel call. */
class CancelBatch {
  private ids: string[] = [];
  private sent: Promise<void> | null = null;

  constructor(private readonly client: ShardClient) {}

  /** Resolves once the shard has taken the Cancel that carries `id`; rejects if that call failed. */
  cancel(id: string): Promise<void> {
    this.ids.push(id);
    this.sent ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      const ids = this.ids;
      this.ids = [];
      this.sent = null;
      return this.client.cancel({ callIds: ids }, { timeoutMs: CANCEL_TIMEOUT_MS }).then(() => undefined);
    });
    return this.sent;
  }
}

/** Reads a stream to its end, discarding it: what the shard still sends after a Cancel. */
async function drain(messages: AsyncIterator<GenerateStreamResponse>): Promise<void> {
  try {
    while (!(await messages.next()).done);
  } catch {
    // The CANCELED end the Cancel asked for, or the reset that followed a failed one.
  }
}

/**
 * `messages` until they end; once `signal` aborts or the reader stops early, `cancel` is sent and the rest is
 * drained. `reset` is the stream's own abort: pulled only when the Cancel failed or the grace ran out.
 */
async function* cancelledByMessage(
  messages: AsyncIterator<GenerateStreamResponse>,
  signal: AbortSignal | undefined,
  cancel: () => Promise<void>,
  reset: AbortController,
): AsyncGenerator<GenerateStreamResponse> {
  let ended = false;
  let graceTimer: NodeJS.Timeout | undefined;
  const sendCancel = (): void => {
    if (ended || graceTimer !== undefined) return;
    graceTimer = setTimeout(() => reset.abort(), CANCEL_GRACE_MS).unref();
    cancel().catch(() => reset.abort());
  };
  if (signal?.aborted) sendCancel();
  signal?.addEventListener("abort", sendCancel, { once: true });
  try {
    for (;;) {
      const next = await messages.next();
      if (next.done) break;
      yield next.value;
    }
    ended = true;
  } catch (error) {
    ended = true;
    throw error;
  } finally {
    signal?.removeEventListener("abort", sendCancel);
    if (ended) clearTimeout(graceTimer);
    else {
      // The reader stopped early (its client went away): cancel, then read on to the end the shard sends.
      sendCancel();
      void drain(messages).finally(() => clearTimeout(graceTimer));
    }
  }
}

/** The group's Generate, named by a call id and cancelled by message (this file's header says why). */
export function generateCancelledByMessage(client: ShardClient): GenerateCall {
  const batch = new CancelBatch(client);
  return (request, options = {}) => {
    const id = randomUUID();
    const reset = new AbortController();
    const headers = new Headers(options.headers);
    headers.set(CALL_ID_HEADER, id);
    const messages = client.generate(request, { ...options, headers, signal: reset.signal })[Symbol.asyncIterator]();
    return cancelledByMessage(messages, options.signal, () => batch.cancel(id), reset);
  };
}

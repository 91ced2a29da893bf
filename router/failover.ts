// Makes a call (Tokenize) or opens a request's token stream on the first group that answers. A group that fails
// before its answer or the stream's first message (unreachable, shutting down, connection reset) has done no
// visible work, so the request moves to the next candidate; once a token has reached the client, moving would
// repeat or contradict it, so a failure then ends the stream with an error that says so. The shard's refusals
// (INVALID_ARGUMENT, NOT_FOUND, ...) are answers, not failures: they end the request as they are.
// This file alone applies that rule: it tells a FailoverObserver how each attempt ended, and the router's
// bookkeeping (a failed group counts as down) and telemetry (the attempt's outcome) act on what it was told.
import { Code, ConnectError } from "@connectrpc/connect";
import type { GenerateStreamResponse } from "../gen/loraserve/v1/generate_pb.js";

/** One group a stream may be opened on. */
export interface Attempt {
  group: string;
  open(): AsyncIterable<GenerateStreamResponse>;
}

/** One group a unary call may be sent to. */
export interface UnaryAttempt<T> {
  group: string;
  call(): Promise<T>;
}

/** How one attempt ended, as the failover loop decided it. */
export type AttemptOutcome =
  /** The group answered: the call's answer came, or the stream ended or its reader stopped without a failure. */
  | { kind: "ok" }
  /** The group failed before its answer and the request moved to the next group. */
  | { kind: "failed_over"; error: ConnectError; groupFailed: true }
  /**
   * The request ended with this attempt's error. `groupFailed`: the group itself failed (none was left to move
   * to, or the stream had begun), rather than answering with a refusal or seeing the client cancel.
   */
  | { kind: "failed"; error: ConnectError; groupFailed: boolean };

/** Hears of every attempt of one request once its outcome is decided, in the order they were made. */
export interface FailoverObserver {
  attempt(group: string, outcome: AttemptOutcome): void;
}

/**
 * UNAVAILABLE: refused connection, shutting down; ABORTED: connect-node's code for a reset connection; CANCELED:
 * its code for a stream the shard reset (RST_STREAM CANCEL), as a shard going down does to its open streams (a
 * tensor-parallel group that lost a rank, test/e2e-tensor-parallel-failure.test.ts). The client's own
 * cancellation is told apart by its signal.
 */
const GROUP_FAILURES = new Set([Code.Unavailable, Code.Aborted, Code.Canceled]);

/**
 * Node's codes for an HTTP/2 session to the group that ended under the call (the group's GOAWAY, as nghttp2's
 * rate limits send one, or a session error), which connect-node reports as INTERNAL.
 */
const SESSION_LOST = new Set(["ERR_HTTP2_SESSION_ERROR", "ERR_HTTP2_GOAWAY_SESSION", "ERR_HTTP2_STREAM_CANCEL"]);

/** The session was lost under the call, or the group refused the stream unprocessed (REFUSED_STREAM, after its GOAWAY). */
function lostSession(error: ConnectError): boolean {
  for (let cause: unknown = error.cause; cause instanceof Error; cause = cause.cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? "";
    if (SESSION_LOST.has(code)) return true;
    if (code === "ERR_HTTP2_STREAM_ERROR" && cause.message.includes("REFUSED_STREAM")) return true;
  }
  return false;
}

/** A failure of the group rather than an answer or the client's own cancellation: the request may move on. */
function isGroupFailure(error: ConnectError, signal: AbortSignal | undefined): boolean {
  // The client's own cancellation also surfaces as a reset stream: that is no reason to try elsewhere.
  return (GROUP_FAILURES.has(error.code) || lostSession(error)) && signal?.aborted !== true;
}

/** The first answer and the group that gave it; reports each attempt that failed, not the one that answered. */
async function firstAnswer<T>(
  attempts: readonly UnaryAttempt<T>[],
  signal: AbortSignal | undefined,
  observer: FailoverObserver,
): Promise<{ group: string; answer: T }> {
  for (const [index, attempt] of attempts.entries()) {
    try {
      return { group: attempt.group, answer: await attempt.call() };
    } catch (error) {
      const failure = ConnectError.from(error);
      const groupFailed = isGroupFailure(failure, signal);
      if (!groupFailed || index + 1 === attempts.length) {
        observer.attempt(attempt.group, { kind: "failed", error: failure, groupFailed });
        throw failure;
      }
      observer.attempt(attempt.group, { kind: "failed_over", error: failure, groupFailed: true });
    }
  }
  throw new ConnectError("no shard group to send the request to", Code.Unavailable);
}

/** The answer of the first group that gives one. */
export async function callWithFailover<T>(
  attempts: readonly UnaryAttempt<T>[],
  signal: AbortSignal | undefined,
  observer: FailoverObserver,
): Promise<T> {
  const { group, answer } = await firstAnswer(attempts, signal, observer);
  observer.attempt(group, { kind: "ok" });
  return answer;
}

/** An opened stream and its first message: the answer that decides the group. */
interface OpenedStream {
  messages: AsyncIterator<GenerateStreamResponse>;
  first: IteratorResult<GenerateStreamResponse>;
}

function openings(attempts: readonly Attempt[]): UnaryAttempt<OpenedStream>[] {
  return attempts.map((attempt) => ({
    group: attempt.group,
    call: async () => {
      const messages = attempt.open()[Symbol.asyncIterator]();
      return { messages, first: await messages.next() };
    },
  }));
}

/**
 * The messages of the first attempt that produces one, moving on as callWithFailover does until then. That
 * attempt is reported when the stream ends: failed, or ok once the stream is done or its reader stops.
 */
export async function* streamWithFailover(
  attempts: readonly Attempt[],
  signal: AbortSignal | undefined,
  observer: FailoverObserver,
): AsyncGenerator<GenerateStreamResponse> {
  const { group, answer } = await firstAnswer(openings(attempts), signal, observer);
  const { messages, first } = answer;
  let outcome: AttemptOutcome = { kind: "ok" };
  try {
    if (first.done) return;
    yield first.value;
    for (let next = await messages.next(); !next.done; next = await messages.next()) yield next.value;
  } catch (error) {
    const failure = ConnectError.from(error);
    const groupFailed = isGroupFailure(failure, signal);
    outcome = { kind: "failed", error: failure, groupFailed };
    if (!groupFailed) throw failure;
    throw new ConnectError(
      `shard group ${group} failed after the stream began, so the request cannot move to another group: ${failure.rawMessage}`,
      Code.Unavailable,
      undefined,
      undefined,
      failure,
    );
  } finally {
    // A consumer that stops early (the client went away) ends the upstream call too; after the end, a no-op.
    await messages.return?.();
    observer.attempt(group, outcome);
  }
}

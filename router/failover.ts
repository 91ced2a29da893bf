// Opens a request's token stream (or makes a unary call: Tokenize) on the first group that takes it. A group that fails before the stream's
// first message (unreachable, shutting down, connection reset) has done no visible work, so the request moves
// to the next candidate; once a token has reached the client, moving would repeat or contradict it, so a
// failure then ends the stream with an error that says so. The shard's refusals (INVALID_ARGUMENT,
// NOT_FOUND, ...) are answers, not failures: they end the request as they are.
import { Code, ConnectError } from "@connectrpc/connect";
import type { GenerateStreamResponse } from "../gen/loraserve/v1/generate_pb.js";

/** One group a request may be sent to. */
export interface Attempt {
  group: string;
  open(): AsyncIterable<GenerateStreamResponse>;
}

/** UNAVAILABLE: refused connection, shutting down; ABORTED: connect-node's code for a reset connection. */
const GROUP_FAILURES = new Set([Code.Unavailable, Code.Aborted]);

/** A failure of the group rather than an answer or the client's own cancellation: the request may move on. */
export function isGroupFailure(error: ConnectError, signal: AbortSignal | undefined): boolean {
  // The client's own cancellation also surfaces as a reset stream: that is no reason to try elsewhere.
  return GROUP_FAILURES.has(error.code) && signal?.aborted !== true;
}

/**
 * The messages of the first attempt that produces one. `groupFailed` hears of every group that failed (so the
 * router stops choosing it before its next Status).
 */
export async function* streamWithFailover(
  attempts: Iterable<Attempt>,
  signal: AbortSignal | undefined,
  groupFailed: (group: string) => void,
): AsyncGenerator<GenerateStreamResponse> {
  let lastFailure: ConnectError | undefined;
  for (const attempt of attempts) {
    const messages = attempt.open()[Symbol.asyncIterator]();
    let first: IteratorResult<GenerateStreamResponse>;
    try {
      first = await messages.next();
    } catch (error) {
      const failure = ConnectError.from(error);
      if (!isGroupFailure(failure, signal)) throw failure;
      groupFailed(attempt.group);
      lastFailure = failure;
      continue;
    }
    if (first.done) return;
    try {
      yield first.value;
      for (let next = await messages.next(); !next.done; next = await messages.next()) yield next.value;
    } catch (error) {
      const failure = ConnectError.from(error);
      if (!isGroupFailure(failure, signal)) throw failure;
      groupFailed(attempt.group);
      throw new ConnectError(
        `shard group ${attempt.group} failed after the stream began, so the request cannot move to another group: ${failure.rawMessage}`,
        Code.Unavailable,
        undefined,
        undefined,
        failure,
      );
    } finally {
      // A consumer that stops early (the client went away) ends the upstream call too; after the end, a no-op.
      await messages.return?.();
    }
    return;
  }
  throw lastFailure ?? new ConnectError("no shard group to send the request to", Code.Unavailable);
}

/** One group a unary call may be sent to. */
export interface UnaryAttempt<T> {
  group: string;
  call(): Promise<T>;
}

/** The answer of the first group that gives one; a group's failure moves the call on as for a stream. */
export async function callWithFailover<T>(
  attempts: Iterable<UnaryAttempt<T>>,
  signal: AbortSignal | undefined,
  groupFailed: (group: string) => void,
): Promise<T> {
  let lastFailure: ConnectError | undefined;
  for (const attempt of attempts) {
    try {
      return await attempt.call();
    } catch (error) {
      const failure = ConnectError.from(error);
      if (!isGroupFailure(failure, signal)) throw failure;
      groupFailed(attempt.group);
      lastFailure = failure;
    }
  }
  throw lastFailure ?? new ConnectError("no shard group to send the request to", Code.Unavailable);
}

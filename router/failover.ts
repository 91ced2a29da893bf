// Makes a call (Tokenize) or opens a request's token stream on the first group that answers. A group that fails
// before its answer or the stream's first message (unreachable, shutting down, connection reset) has done no
// visible work, so the request moves to the next candidate; once a token has reached the client, moving would
// repeat or contradict it, so a failure then ends the stream with an error that says so. The shard's refusals
// (INVALID_ARGUMENT, NOT_FOUND, ...) are answers, not failures: they end the request as they are.
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

/** UNAVAILABLE: refused connection, shutting down; ABORTED: connect-node's code for a reset connection. */
const GROUP_FAILURES = new Set([Code.Unavailable, Code.Aborted]);

/** A failure of the group rather than an answer or the client's own cancellation: the request may move on. */
export function isGroupFailure(error: ConnectError, signal: AbortSignal | undefined): boolean {
  // The client's own cancellation also surfaces as a reset stream: that is no reason to try elsewhere.
  return GROUP_FAILURES.has(error.code) && signal?.aborted !== true;
}

/**
 * The answer of the first group that gives one. `groupFailed` hears of every group that failed (so the router
 * stops choosing it before its next Status).
 */
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

/** An opened stream and its first message: the answer that decides the group. */
interface OpenedStream {
  group: string;
  messages: AsyncIterator<GenerateStreamResponse>;
  first: IteratorResult<GenerateStreamResponse>;
}

function* openings(attempts: Iterable<Attempt>): Generator<UnaryAttempt<OpenedStream>> {
  for (const attempt of attempts) {
    yield {
      group: attempt.group,
      call: async () => {
        const messages = attempt.open()[Symbol.asyncIterator]();
        return { group: attempt.group, messages, first: await messages.next() };
      },
    };
  }
}

/** The messages of the first attempt that produces one, moving on as callWithFailover does until then. */
export async function* streamWithFailover(
  attempts: Iterable<Attempt>,
  signal: AbortSignal | undefined,
  groupFailed: (group: string) => void,
): AsyncGenerator<GenerateStreamResponse> {
  const { group, messages, first } = await callWithFailover(openings(attempts), signal, groupFailed);
  if (first.done) return;
  try {
    yield first.value;
    for (let next = await messages.next(); !next.done; next = await messages.next()) yield next.value;
  } catch (error) {
    const failure = ConnectError.from(error);
    if (!isGroupFailure(failure, signal)) throw failure;
    groupFailed(group);
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
  }
}

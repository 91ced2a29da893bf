// Server-sent events (text/event-stream) for the streaming HTTP routes: TGI's /generate_stream and OpenAI's
// `stream: true`. Each event is one `data:` line of JSON.
import type { NodeResponse } from "./node-handler.js";

export interface EventStreamOptions {
  /** Aborts when the client has gone away: nothing more is written then. */
  signal: AbortSignal;
  /** The data of the event that reports a failure once the stream has begun. */
  errorEvent(err: unknown): unknown;
  /** A last `data:` line sent as is after the events, also after an error (OpenAI's `[DONE]`). */
  trailer?: string;
}

/**
 * Answers with an event stream of `events`. The first event is awaited before the response is committed, so
 * a request the shard refuses (its error comes before the first token) is still answered with an HTTP error
 * status by the caller; a failure after that is reported as an error event.
 */
export async function sendEventStream(response: NodeResponse, events: AsyncIterable<unknown>, options: EventStreamOptions): Promise<void> {
  const iterator = events[Symbol.asyncIterator]();
  let next = await iterator.next();
  response.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    // Proxies such as nginx would otherwise buffer the stream and deliver the tokens all at once.
    "x-accel-buffering": "no",
  });
  const write = (data: string): void => {
    if (!options.signal.aborted) response.write(`data: ${data}\n\n`);
  };
  try {
    for (; !next.done; next = await iterator.next()) write(JSON.stringify(next.value));
  } catch (err) {
    write(JSON.stringify(options.errorEvent(err)));
  }
  if (options.trailer !== undefined) write(options.trailer);
  response.end();
}

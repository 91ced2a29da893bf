// Reads a text/event-stream as a browser's EventSource does, independently of the server's writer: events are
// separated by a blank line, an event's data is its `data:` lines joined by newlines. Fed as the bytes arrive.

/** The `data:` payloads of the complete events in `buffer`, and what is left of an event still arriving. */
export function takeEvents(buffer: string): { events: string[]; rest: string } {
  const parts = buffer.split(/\r?\n\r?\n/);
  const rest = parts.pop()!;
  const events = parts
    .map((event) =>
      event
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice("data:".length).replace(/^ /, ""))
        .join("\n"),
    )
    .filter((data) => data !== "");
  return { events, rest };
}

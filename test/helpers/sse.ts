// Reads a text/event-stream response the way a browser's EventSource does, independently of the server's
// writer: events are separated by a blank line, an event's data is its `data:` lines joined by newlines.
export async function readEventData(response: Response): Promise<string[]> {
  const text = await response.text();
  return text
    .split(/\r?\n\r?\n/)
    .map((event) =>
      event
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice("data:".length).replace(/^ /, ""))
        .join("\n"),
    )
    .filter((data) => data !== "");
}

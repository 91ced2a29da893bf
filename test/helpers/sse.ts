// Reads a whole text/event-stream response with the benchmark's reader (bench/serving/sse-events.ts), which
// follows EventSource, independently of the server's writer.
import { takeEvents } from "../../bench/serving/sse-events.js";

export async function readEventData(response: Response): Promise<string[]> {
  // A stream's last event ends in a blank line; one cut short without it still counts, as before.
  return takeEvents(`${await response.text()}\n\n`).events;
}

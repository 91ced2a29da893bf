// A complete JSON response, the only kind the plain-HTTP routes send.
import type { NodeResponse } from "./node-handler.js";

export function sendJson(response: NodeResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(JSON.stringify(body));
  response.writeHead(status, { "content-type": "application/json", "content-length": bytes.length });
  response.end(bytes);
}

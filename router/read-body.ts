// Reads a request body into memory, refusing it once it passes the limit (before buffering it all).
import type { NodeRequest } from "./node-handler.js";

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`the request body exceeds ${limit} bytes`);
  }
}

export function readBody(request: NodeRequest, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    // The rest of a refused body is read and dropped rather than the connection torn down, so the client
    // still receives the 413.
    const refuse = (): void => {
      request.off("data", onData);
      request.resume();
      reject(new BodyTooLargeError(limit));
    };
    const onData = (chunk: Buffer): void => {
      length += chunk.length;
      if (length > limit) refuse();
      else chunks.push(chunk);
    };
    if (Number(request.headers["content-length"] ?? 0) > limit) return refuse();
    request.on("data", onData);
    request.once("end", () => resolve(Buffer.concat(chunks)));
    request.once("error", reject);
  });
}

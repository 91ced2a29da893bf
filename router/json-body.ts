// The JSON body of a plain-HTTP request, checked the same way for TGI and OpenAI routes: declared as JSON,
// within the size limit, valid UTF-8 (a replacement character would silently change the prompt), valid JSON,
// and no lone UTF-16 surrogate escape ("\ud800": UTF-8 cannot carry one, so it too would become U+FFFD on
// its way to the shard). Each protocol reports a RequestBodyError in its own error shape.
import type { NodeRequest } from "./node-handler.js";
import { BodyTooLargeError, readBody } from "./read-body.js";

export class RequestBodyError extends Error {
  constructor(
    readonly status: 400 | 413 | 415,
    message: string,
  ) {
    super(message);
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
/** With the u flag a surrogate pair is one code point: only a lone surrogate matches. */
const LONE_SURROGATE = /\p{Cs}/u;

class LoneSurrogateError extends Error {}

/** JSON.parse's reviver sees every key and value once: a string with a lone surrogate stops the parse. */
function refuseLoneSurrogates(key: string, value: unknown): unknown {
  if (LONE_SURROGATE.test(key) || (typeof value === "string" && LONE_SURROGATE.test(value))) throw new LoneSurrogateError();
  return value;
}

function isJsonMediaType(contentType: string | undefined): boolean {
  const mediaType = contentType?.split(";")[0]?.trim().toLowerCase() ?? "";
  return mediaType === "application/json" || /^application\/[^/]+\+json$/.test(mediaType);
}

export async function readJsonBody(request: NodeRequest, maxBodyBytes: number): Promise<unknown> {
  if (!isJsonMediaType(request.headers["content-type"])) {
    // Drained so that the connection stays usable for the client's next request.
    request.resume();
    throw new RequestBodyError(415, "expected a request with `Content-Type: application/json`");
  }
  let bytes: Buffer;
  try {
    bytes = await readBody(request, maxBodyBytes);
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw new RequestBodyError(413, err.message);
    throw err;
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new RequestBodyError(400, "the body is not valid UTF-8");
  }
  try {
    return JSON.parse(text, refuseLoneSurrogates);
  } catch (err) {
    if (err instanceof LoneSurrogateError) throw new RequestBodyError(400, "the body holds a lone UTF-16 surrogate escape (such as \\ud800), which is not text");
    throw new RequestBodyError(400, `the body is not valid JSON: ${(err as Error).message}`);
  }
}

// The credential of the internal link between the router and its shards: a shared secret read from a file
// (--shard-token-file on both), sent by the router as `authorization: Bearer TOKEN` on every ShardService and
// AdapterService call and required by the shard on every one. Without it, anyone who can reach the shard's port
// could load adapters past the router's --admin-token. A file, not a flag value: `ps` shows command lines.
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/** The token in the file, surrounding whitespace (a trailing newline) dropped; an empty file is refused. */
export function readShardToken(path: string): string {
  const token = readFileSync(path, "utf8").trim();
  if (token === "") throw new Error(`--shard-token-file ${path} is empty`);
  if (/\s/.test(token)) throw new Error(`--shard-token-file ${path} must hold one token without spaces`);
  return token;
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** The router's side: every call it makes to a shard carries the token. */
export function sendShardToken(token: string): Interceptor {
  return (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
}

/** The shard's side: a call without the token, or with another one, is refused UNAUTHENTICATED before it runs. */
export function requireShardToken(token: string): Interceptor {
  const expected = digest(token);
  return (next) => async (request) => {
    const presented = BEARER.exec(request.header.get("authorization") ?? "")?.[1];
    // Compared as digests: equal lengths for timingSafeEqual, and no timing hint about the token.
    if (presented === undefined || !timingSafeEqual(digest(presented), expected)) {
      throw new ConnectError("this shard only answers callers with its token (--shard-token-file)", Code.Unauthenticated);
    }
    return await next(request);
  };
}

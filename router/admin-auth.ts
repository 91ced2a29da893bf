// The admin token that guards loading and unloading adapters (AdapterService.LoadAdapter/UnloadAdapter and
// their HTTP forms). Without a configured token those calls are refused outright: an open server must not
// let anyone make it read files.
import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

export class AdminAuth {
  /** `token` null: no admin calls at all. */
  constructor(private readonly token: string | null) {}

  /** Whether the caller holds the admin token (what only the admin may read, like adapters' paths, is shown). */
  allows(authorization: string | null | undefined): boolean {
    try {
      this.check(authorization);
      return true;
    } catch {
      return false;
    }
  }

  /** Throws UNAUTHENTICATED without a bearer token, PERMISSION_DENIED for a wrong one or when none is configured. */
  check(authorization: string | null | undefined): void {
    if (this.token === null) {
      throw new ConnectError("loading and unloading adapters is disabled: start the router with --admin-token (or ADMIN_TOKEN)", Code.PermissionDenied);
    }
    const presented = BEARER.exec(authorization ?? "")?.[1];
    if (presented === undefined) throw new ConnectError("this call needs the admin token: send `authorization: Bearer TOKEN`", Code.Unauthenticated);
    // Compared as digests: equal lengths for timingSafeEqual, and no timing hint about the token.
    if (!timingSafeEqual(digest(presented), digest(this.token))) throw new ConnectError("the admin token is not the right one", Code.PermissionDenied);
  }
}

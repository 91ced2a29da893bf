// TGI's error body and the one mapping from a shard's (or our own) ConnectError codes to TGI's HTTP statuses.
import { Code, ConnectError } from "@connectrpc/connect";
import { reportingErrors } from "../http-route.js";
import { RequestBodyError } from "../json-body.js";

export class TgiError extends Error {
  constructor(
    readonly status: number,
    readonly errorType: string,
    message: string,
  ) {
    super(message);
  }

  body(): { error: string; error_type: string } {
    return { error: this.message, error_type: this.errorType };
  }
}

export function validationError(message: string): TgiError {
  return new TgiError(422, "validation", message);
}

const STATUS_OF_CODE: Partial<Record<Code, { status: number; errorType: string }>> = {
  // A request the shard refused as it stands: TGI answers every such refusal 422 "validation".
  [Code.InvalidArgument]: { status: 422, errorType: "validation" },
  [Code.NotFound]: { status: 422, errorType: "validation" },
  [Code.OutOfRange]: { status: 422, errorType: "validation" },
  [Code.FailedPrecondition]: { status: 422, errorType: "validation" },
  // An adapter id or path that leads outside every adapter root (`..`, a symlink out): refused access.
  [Code.PermissionDenied]: { status: 403, errorType: "forbidden" },
  [Code.Unauthenticated]: { status: 401, errorType: "unauthorized" },
  [Code.ResourceExhausted]: { status: 429, errorType: "overloaded" },
  [Code.Unavailable]: { status: 503, errorType: "unavailable" },
  [Code.DeadlineExceeded]: { status: 504, errorType: "timeout" },
};

/** Any failure of a request, as TGI would report it; what the shard did not classify is a failed dependency. */
export function tgiErrorOf(err: unknown): TgiError {
  if (err instanceof TgiError) return err;
  if (err instanceof RequestBodyError) return new TgiError(err.status, "validation", err.message);
  const connectError = ConnectError.from(err);
  const mapped = STATUS_OF_CODE[connectError.code] ?? { status: 424, errorType: "generation" };
  return new TgiError(mapped.status, mapped.errorType, connectError.rawMessage);
}

/** A TGI route: failures before the response began are answered with TGI's status and body. */
export const tgiRoute = reportingErrors((err) => {
  const error = tgiErrorOf(err);
  return { status: error.status, body: error.body() };
});

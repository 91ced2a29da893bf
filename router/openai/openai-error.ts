// OpenAI's error body ({"error": {message, type, param, code}}) and the one mapping from a shard's (or our
// own) ConnectError codes to OpenAI's HTTP statuses.
import { Code, ConnectError } from "@connectrpc/connect";
import { reportingErrors } from "../http-route.js";
import { RequestBodyError } from "../json-body.js";

export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

function errorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 429) return "rate_limit_error";
  return status < 500 ? "invalid_request_error" : "server_error";
}

export function openAiErrorBody(status: number, message: string, param: string | null = null, code: string | null = null): OpenAiErrorBody {
  return { error: { message, type: errorType(status), param, code } };
}

export class OpenAiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  body(): OpenAiErrorBody {
    return openAiErrorBody(this.status, this.message, this.param, this.code);
  }
}

/** A request field that is wrong as sent. */
export function invalidField(param: string, message: string): OpenAiError {
  return new OpenAiError(400, message, param);
}

const STATUS_OF_CODE: Partial<Record<Code, { status: number; param?: string; code?: string }>> = {
  [Code.InvalidArgument]: { status: 400 },
  [Code.OutOfRange]: { status: 400 },
  [Code.FailedPrecondition]: { status: 400 },
  // The only thing a generation request names that can be missing is its model (the adapter).
  [Code.NotFound]: { status: 404, param: "model", code: "model_not_found" },
  [Code.Unauthenticated]: { status: 401 },
  [Code.PermissionDenied]: { status: 403 },
  [Code.ResourceExhausted]: { status: 429 },
  [Code.Unavailable]: { status: 503 },
  [Code.DeadlineExceeded]: { status: 504 },
};

export function openAiErrorOf(err: unknown): OpenAiError {
  if (err instanceof OpenAiError) return err;
  if (err instanceof RequestBodyError) return new OpenAiError(err.status, err.message);
  const connectError = ConnectError.from(err);
  const mapped = STATUS_OF_CODE[connectError.code] ?? { status: 500 };
  return new OpenAiError(mapped.status, connectError.rawMessage, mapped.param ?? null, mapped.code ?? null);
}

/** An OpenAI route: failures before the response began are answered with OpenAI's status and error body. */
export const openAiRoute = reportingErrors((err) => {
  const error = openAiErrorOf(err);
  return { status: error.status, body: error.body() };
});

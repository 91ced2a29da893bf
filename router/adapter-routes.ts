// The HTTP form of AdapterService: GET /adapters, GET /adapters/{id}, POST /adapters {"id", "path"?} (load) and
// DELETE /adapters/{id}[?drain=true] (unload, at once or once its sequences finish; both need
// `authorization: Bearer TOKEN`). JSON in, JSON out, errors in TGI's {error, error_type} shape. An id may hold
// slashes (ORG/NAME): everything after /adapters/ is the id.
import { Code, ConnectError } from "@connectrpc/connect";
import { AdapterTier, type Adapter } from "../gen/loraserve/v1/adapter_pb.js";
import type { AdapterForwarder } from "./adapter-service.js";
import { reportingErrors, serveRoute, type Exchange, type RouteSettings } from "./http-route.js";
import { RequestBodyError } from "./json-body.js";
import { sendJson } from "./json-response.js";
import type { NodeRequest, NodeResponse } from "./node-handler.js";

const PREFIX = "/adapters";

const TIER_NAME: Record<AdapterTier, string> = {
  [AdapterTier.UNSPECIFIED]: "unspecified",
  [AdapterTier.DISK]: "disk",
  [AdapterTier.HOST]: "host",
  [AdapterTier.DEVICE]: "device",
};

const STATUS_OF_CODE: Partial<Record<Code, [number, string]>> = {
  [Code.InvalidArgument]: [422, "validation"],
  [Code.NotFound]: [404, "not_found"],
  [Code.Unauthenticated]: [401, "unauthorized"],
  [Code.PermissionDenied]: [403, "forbidden"],
  [Code.FailedPrecondition]: [409, "conflict"],
  [Code.AlreadyExists]: [409, "conflict"],
  [Code.Unavailable]: [503, "unavailable"],
  [Code.DeadlineExceeded]: [504, "timeout"],
};

function adapterJson(adapter: Adapter) {
  return {
    id: adapter.id,
    // Empty for all but the admin (AdapterForwarder): then absent.
    ...(adapter.path === "" ? {} : { path: adapter.path }),
    tier: TIER_NAME[adapter.tier],
    rank: adapter.rank,
    alpha: adapter.alpha,
    target_modules: adapter.targetModules,
    active_sequences: adapter.activeSequences,
    has_chat_template: adapter.hasChatTemplate,
  };
}

function report(err: unknown): { status: number; body: { error: string; error_type: string } } {
  if (err instanceof RequestBodyError) return { status: err.status, body: { error: err.message, error_type: "validation" } };
  const error = ConnectError.from(err);
  const [status, errorType] = STATUS_OF_CODE[error.code] ?? [500, "internal"];
  return { status, body: { error: error.rawMessage, error_type: errorType } };
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** POST /adapters: {"id": string, "path"?: string}. */
async function loadRequest(exchange: Exchange): Promise<{ id: string; path: string }> {
  const body = await exchange.body();
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalid('the body must be a JSON object {"id": ..., "path": ...}');
  const { id, path = "" } = body as { id?: unknown; path?: unknown };
  if (typeof id !== "string" || id === "") throw invalid("`id` must be a non-empty string");
  if (typeof path !== "string") throw invalid("`path` must be a string (a directory relative to an adapter root)");
  return { id, path };
}

/** The id of /adapters/{id}, percent-decoded; null for /adapters itself. */
function idOf(path: string): string | null {
  if (path === PREFIX) return null;
  try {
    return decodeURIComponent(path.slice(PREFIX.length + 1));
  } catch {
    throw invalid(`the adapter id in ${path} is not valid percent-encoding`);
  }
}

/** DELETE /adapters/{id}?drain=true: unload once the adapter's running sequences finish. */
function drainOf(url: string | undefined): boolean {
  const drain = new URL(url ?? "/", "http://router").searchParams.get("drain");
  if (drain === null || drain === "false") return false;
  if (drain === "true") return true;
  throw invalid(`\`drain\` must be true or false, not ${JSON.stringify(drain)}`);
}

function adapterRoute(adapters: AdapterForwarder, path: string) {
  return reportingErrors(report)(async (exchange) => {
    const { request, response, signal } = exchange;
    const authorization = request.headers.authorization;
    const id = idOf(path);
    const route = `${request.method} ${id === null ? PREFIX : `${PREFIX}/{id}`}`;
    if (route === "GET /adapters") {
      sendJson(response, 200, { adapters: (await adapters.list(authorization, signal)).map(adapterJson) });
    } else if (route === "POST /adapters") {
      // The token is checked before the body is read; a refused body is drained to keep the connection usable.
      try {
        adapters.checkAdmin(authorization);
      } catch (err) {
        request.resume();
        throw err;
      }
      const { id: loadId, path: loadPath } = await loadRequest(exchange);
      sendJson(response, 200, adapterJson(await adapters.load(loadId, loadPath, authorization, signal)));
    } else if (route === "GET /adapters/{id}") {
      sendJson(response, 200, adapterJson(await adapters.get(id as string, authorization, signal)));
    } else if (route === "DELETE /adapters/{id}") {
      await adapters.unload(id as string, drainOf(request.url), authorization, signal);
      sendJson(response, 200, {});
    } else {
      request.resume();
      const allowed = id === null ? "GET, POST" : "GET, DELETE";
      response.setHeader("allow", allowed);
      sendJson(response, 405, { error: `${request.method} ${path} is not served; this path allows ${allowed}`, error_type: "method_not_allowed" });
    }
  });
}

/** Serves /adapters and /adapters/{id}; every other path goes to `next`. */
export function adapterRoutes(adapters: AdapterForwarder, settings: RouteSettings, next: (request: NodeRequest, response: NodeResponse) => void) {
  return (request: NodeRequest, response: NodeResponse): void => {
    const path = new URL(request.url ?? "/", "http://router").pathname;
    if (path !== PREFIX && !path.startsWith(`${PREFIX}/`)) return next(request, response);
    serveRoute(adapterRoute(adapters, path), request, response, settings);
  };
}

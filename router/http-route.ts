// One plain-HTTP route (TGI, OpenAI): what a handler gets, and how a failure is answered in the route's
// protocol when nothing has been sent yet.
import { readJsonBody } from "./json-body.js";
import { sendJson } from "./json-response.js";
import type { NodeRequest, NodeResponse } from "./node-handler.js";
import type { ShardPool } from "./shard-pool.js";

export interface RouteSettings {
  pool: ShardPool;
  maxBodyBytes: number;
}

export interface Exchange extends RouteSettings {
  request: NodeRequest;
  response: NodeResponse;
  /** Aborts when the client goes away: passed on to the shard, it cancels the shard's work for this request. */
  signal: AbortSignal;
  /** The request's JSON body, checked (content type, size, UTF-8, syntax). */
  body(): Promise<unknown>;
}

export type Route = (exchange: Exchange) => Promise<void>;

/** A protocol's error status and body for any failure of a request. */
export type ErrorReporter = (err: unknown) => { status: number; body: unknown };

/** Wraps a route so that a failure before its response began is answered with the protocol's error. */
export function reportingErrors(report: ErrorReporter): (route: Route) => Route {
  return (route) => async (exchange) => {
    try {
      await route(exchange);
    } catch (err) {
      if (exchange.response.headersSent) return;
      const { status, body } = report(err);
      sendJson(exchange.response, status, body);
    }
  };
}

export function serveRoute(route: Route, request: NodeRequest, response: NodeResponse, settings: RouteSettings): void {
  const abort = new AbortController();
  response.once("close", () => abort.abort());
  void route({
    ...settings,
    request,
    response,
    signal: abort.signal,
    body: () => readJsonBody(request, settings.maxBodyBytes),
  });
}

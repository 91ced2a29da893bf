// The plain-HTTP routes served beside Connect/gRPC on the same port: TGI's and OpenAI's.
import { serveRoute, type Route, type RouteSettings } from "./http-route.js";
import { sendJson } from "./json-response.js";
import type { NodeRequest, NodeResponse } from "./node-handler.js";
import { chatCompletionsRoute } from "./openai/chat-route.js";
import { completionsRoute } from "./openai/completions-route.js";
import { MODEL_PATH_PREFIX, modelRoute, modelsRoute } from "./openai/models-route.js";
import { openAiErrorBody } from "./openai/openai-error.js";
import { compatGenerateRoute, generateRoute, generateStreamRoute } from "./tgi/generate-route.js";
import { healthRoute } from "./tgi/health-route.js";
import { infoRoute } from "./tgi/info-route.js";
import { tokenizeRoute } from "./tgi/tokenize-route.js";

/** Keyed by "METHOD /path". */
const ROUTES: Record<string, Route> = {
  "POST /": compatGenerateRoute,
  "POST /generate": generateRoute,
  "POST /generate_stream": generateStreamRoute,
  "POST /tokenize": tokenizeRoute,
  "GET /info": infoRoute,
  "GET /health": healthRoute,
  "GET /v1/models": modelsRoute,
  "POST /v1/completions": completionsRoute,
  "POST /v1/chat/completions": chatCompletionsRoute,
};

/** A path we serve asked with another method (405), or a path we do not serve (404), in the path's API's shape. */
function refuse(request: NodeRequest, response: NodeResponse, path: string): void {
  const allowed = Object.keys(ROUTES)
    .filter((key) => key.endsWith(` ${path}`))
    .map((key) => key.split(" ")[0]!);
  const [status, message] =
    allowed.length > 0 ? [405, `${path} allows ${allowed.join(", ")}, not ${request.method}`] : [404, `no route for ${request.method} ${path}`];
  if (allowed.length > 0) response.setHeader("allow", allowed.join(", "));
  request.resume();
  const body = path.startsWith("/v1/")
    ? openAiErrorBody(status, message)
    : { error: message, error_type: status === 404 ? "not_found" : "method_not_allowed" };
  sendJson(response, status, body);
}

export function httpRoutes(settings: RouteSettings) {
  return (request: NodeRequest, response: NodeResponse): void => {
    const path = new URL(request.url ?? "/", "http://router").pathname;
    const route = ROUTES[`${request.method} ${path}`] ?? (request.method === "GET" && path.startsWith(MODEL_PATH_PREFIX) ? modelRoute : undefined);
    if (route) serveRoute(route, request, response, settings);
    else refuse(request, response, path);
  };
}

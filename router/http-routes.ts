// The plain-HTTP routes served beside Connect/gRPC on the same port: TGI's /generate and /health.
import { sendJson } from "./json-response.js";
import type { NodeRequest, NodeResponse } from "./node-handler.js";
import type { ShardPool } from "./shard-pool.js";
import { generateRoute } from "./tgi/generate-route.js";

/** How long /health waits for the shard's Status before calling it unhealthy. */
const HEALTH_TIMEOUT_MS = 2000;

export function httpRoutes(pool: ShardPool, maxBodyBytes: number) {
  return (request: NodeRequest, response: NodeResponse): void => {
    const path = new URL(request.url ?? "/", "http://router").pathname;
    const route = `${request.method} ${path}`;
    if (route === "POST /generate") {
      void generateRoute(request, response, pool, maxBodyBytes);
    } else if (route === "GET /health") {
      // TGI's meaning: 200 once a request could be served, 503 before.
      void pool.ready(HEALTH_TIMEOUT_MS).then((ready) => {
        if (ready) {
          response.writeHead(200);
          response.end();
        } else {
          sendJson(response, 503, { error: "the shard is not ready", error_type: "healthcheck" });
        }
      });
    } else {
      sendJson(response, 404, { error: `no route for ${route}`, error_type: "not_found" });
    }
  };
}

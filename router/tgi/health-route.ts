// GET /health with TGI's meaning: 200 once a request could be served, 503 before.
import { sendJson } from "../json-response.js";
import { tgiRoute } from "./tgi-error.js";

/** How long /health waits for the shards' Status before calling them unhealthy. */
const HEALTH_TIMEOUT_MS = 2000;

export const healthRoute = tgiRoute(async ({ pool, response }) => {
  if (await pool.ready(HEALTH_TIMEOUT_MS)) {
    response.writeHead(200);
    response.end();
  } else {
    sendJson(response, 503, { error: "the shard is not ready", error_type: "healthcheck" });
  }
});

// GET /health with TGI's meaning: 200 once a request could be served, 503 before.
import { sendJson } from "../json-response.js";
import { tgiRoute } from "./tgi-error.js";

export const healthRoute = tgiRoute(async ({ pool, response }) => {
  // A probe that arrives with the router is answered from the first poll, not from no view at all.
  await pool.firstViews();
  if (pool.ready()) {
    response.writeHead(200);
    response.end();
  } else {
    sendJson(response, 503, { error: "the shard is not ready", error_type: "healthcheck" });
  }
});

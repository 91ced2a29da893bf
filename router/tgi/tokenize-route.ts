// POST /tokenize: TGI's body in, TGI's list of {id, text, start, stop} out.
import { sendJson } from "../json-response.js";
import { toTokenizeRequest } from "./request.js";
import { tgiRoute } from "./tgi-error.js";

export const tokenizeRoute = tgiRoute(async ({ pool, signal, response, body }) => {
  const request = toTokenizeRequest(await body());
  const { tokens } = await pool.tokenize(request, { signal });
  sendJson(
    response,
    200,
    tokens.map(({ id, text, start, stop }) => ({ id, text, start, stop })),
  );
});

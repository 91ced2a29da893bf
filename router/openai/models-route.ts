// GET /v1/models: the base model and every adapter a request may name, each an OpenAI model object;
// GET /v1/models/{id}: one of them, or 404 model_not_found.
import { sendJson } from "../json-response.js";
import { servedModels } from "../shard-status.js";
import { OpenAiError, openAiRoute } from "./openai-error.js";

/** OpenAI's `created` is a Unix time in seconds; the models are as old as this router. */
const STARTED = Math.floor(Date.now() / 1000);

const modelObject = (id: string) => ({ id, object: "model", created: STARTED, owned_by: "loraserve" });

export const MODEL_PATH_PREFIX = "/v1/models/";

export const modelsRoute = openAiRoute(async ({ pool, response }) => {
  const { base, adapterIds } = await servedModels(pool);
  sendJson(response, 200, { object: "list", data: [base.modelId, ...adapterIds].map(modelObject) });
});

export const modelRoute = openAiRoute(async ({ pool, request, response }) => {
  // The id is the rest of the path: a base model's id is often a path or an ORG/NAME, slashes included.
  const id = decodeURIComponent(new URL(request.url ?? "/", "http://router").pathname.slice(MODEL_PATH_PREFIX.length));
  const { base, adapterIds } = await servedModels(pool);
  if (id !== base.modelId && !adapterIds.includes(id)) throw new OpenAiError(404, `the model ${JSON.stringify(id)} does not exist`, "model", "model_not_found");
  sendJson(response, 200, modelObject(id));
});

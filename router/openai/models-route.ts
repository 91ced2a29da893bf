// GET /v1/models: the base model and every adapter a request may name, each an OpenAI model object.
import { sendJson } from "../json-response.js";
import { servedModels } from "../shard-status.js";
import { openAiRoute } from "./openai-error.js";

/** OpenAI's `created` is a Unix time in seconds; the models are as old as this router. */
const STARTED = Math.floor(Date.now() / 1000);

export const modelsRoute = openAiRoute(async ({ pool, signal, response }) => {
  const { base, adapterIds } = await servedModels(pool, signal);
  const model = (id: string) => ({ id, object: "model", created: STARTED, owned_by: "loraserve" });
  sendJson(response, 200, { object: "list", data: [model(base.modelId), ...adapterIds.map(model)] });
});

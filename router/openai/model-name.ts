// OpenAI's `model` → the adapter to apply: the base model's id (as /v1/models lists it) means none, and so does
// "tgi", the name TGI's own OpenAI routes answer to (clients written for TGI send it); any other name is an
// adapter id, which the shard refuses with NOT_FOUND (404 model_not_found) if it has no such adapter.
import type { ShardPool } from "../shard-pool.js";
import { servedModels } from "../shard-status.js";

/** The model name TGI's Messages API documents and accepts for the model it serves. */
const TGI_MODEL_NAME = "tgi";

export async function adapterOf(model: string, pool: ShardPool): Promise<string> {
  if (model === TGI_MODEL_NAME) return "";
  const { base } = await servedModels(pool);
  return model === base.modelId ? "" : model;
}

// OpenAI's `model` → the adapter to apply: the base model's id (as /v1/models lists it) means none, any
// other name is an adapter id, which the shard refuses with NOT_FOUND (404 model_not_found) if it has no
// such adapter.
import type { ShardPool } from "../shard-pool.js";
import { servedModels } from "../shard-status.js";

export async function adapterOf(model: string, pool: ShardPool): Promise<string> {
  const { base } = await servedModels(pool);
  return model === base.modelId ? "" : model;
}

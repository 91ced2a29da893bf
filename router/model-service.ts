// loraserve.v1.ModelService, answered by the router from the shards' Status (the router's only knowledge of
// them); TGI's /info shows the same facts.
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { InfoResponseSchema, type InfoResponse, type ModelService } from "../gen/loraserve/v1/model_pb.js";
import type { ShardPool } from "./shard-pool.js";
import { servedModels } from "./shard-status.js";
import { VERSION } from "./version.js";

export async function modelInfo(pool: ShardPool): Promise<InfoResponse> {
  const { base } = await servedModels(pool);
  return create(InfoResponseSchema, {
    modelId: base.modelId,
    modelDtype: base.modelDtype,
    device: base.device,
    maxInputTokens: base.maxInputTokens,
    maxTotalTokens: base.maxTotalTokens,
    maxNewTokensLimit: base.maxNewTokensLimit,
    maxLoras: base.maxLoras,
    maxLoraRank: base.maxLoraRank,
    version: VERSION,
    vocabSize: base.vocabSize,
  });
}

export function modelService(pool: ShardPool): ServiceImpl<typeof ModelService> {
  return {
    info: () => modelInfo(pool),
  };
}

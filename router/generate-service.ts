// loraserve.v1.GenerateService: every call is forwarded to a shard group (moving to the next group if one fails
// before the first token, or before a Tokenize answer); the shard's ConnectErrors travel back with their codes, and the client's
// cancellation (or deadline) stops the upstream call through the handler's signal.
import type { ServiceImpl } from "@connectrpc/connect";
import { GenerateService } from "../gen/loraserve/v1/generate_pb.js";
import { collectGeneration } from "./collect.js";
import type { ShardPool } from "./shard-pool.js";

export function generateService(pool: ShardPool): ServiceImpl<typeof GenerateService> {
  return {
    generate(request, context) {
      return collectGeneration(pool.generate(request, { signal: context.signal }));
    },
    generateStream(request, context) {
      return pool.generate(request, { signal: context.signal });
    },
    tokenize(request, context) {
      return pool.tokenize(request, { signal: context.signal });
    },
  };
}

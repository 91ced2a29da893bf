// The generated client of a shard group's leader (ShardService), named once for the router's modules.
import type { Client } from "@connectrpc/connect";
import type { ShardService } from "../gen/loraserve/v1/shard_pb.js";

export type ShardClient = Client<typeof ShardService>;

// The request header by which the router names each Generate call it sends a shard, so that it can cancel the
// call with ShardService.Cancel instead of resetting its stream (shard.proto says why).
export const CALL_ID_HEADER = "loraserve-call-id";

// The request handler shape shared by node:http and node:http2 (compat API), as connect-node defines it.
import type { connectNodeAdapter } from "@connectrpc/connect-node";

export type NodeHandler = ReturnType<typeof connectNodeAdapter>;
export type NodeRequest = Parameters<NodeHandler>[0];
export type NodeResponse = Parameters<NodeHandler>[1];

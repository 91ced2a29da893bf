// The router assembled: Connect/gRPC/gRPC-Web services and the TGI routes behind one handler on one port.
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { GenerateService } from "../gen/loraserve/v1/generate_pb.js";
import { generateService } from "./generate-service.js";
import { httpRoutes } from "./http-routes.js";
import { listenOnePort, type OnePortServer } from "./one-port-server.js";
import type { RouterOptions } from "./options.js";
import { ShardPool } from "./shard-pool.js";

export async function startRouter(options: RouterOptions): Promise<OnePortServer> {
  const pool = new ShardPool(options.shardUris);
  const handler = connectNodeAdapter({
    routes: (router) => router.service(GenerateService, generateService(pool)),
    fallback: httpRoutes(pool, options.maxBodyBytes),
    readMaxBytes: options.maxBodyBytes,
  });
  const server = await listenOnePort(handler, options.port, options.hostname);
  return {
    port: server.port,
    close: async () => {
      await server.close();
      pool.close();
    },
  };
}

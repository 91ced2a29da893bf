// The router assembled: Connect/gRPC/gRPC-Web services (with health checking and server reflection) and the
// TGI and OpenAI routes behind one handler on one port.
import cluster from "node:cluster";
import type { ConnectRouter } from "@connectrpc/connect";
import { readShardToken } from "../common/shard-token.js";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AdapterService } from "../gen/loraserve/v1/adapter_pb.js";
import { GenerateService } from "../gen/loraserve/v1/generate_pb.js";
import { ModelService } from "../gen/loraserve/v1/model_pb.js";
import { adapterRoutes } from "./adapter-routes.js";
import { AdapterForwarder, adapterService } from "./adapter-service.js";
import { AdminAuth } from "./admin-auth.js";
import { Drain } from "./drain.js";
import { generateService } from "./generate-service.js";
import { registerHealth, ServingStatus, type HealthStatuses } from "./grpc-health.js";
import { syncHealth } from "./health-sync.js";
import { httpRoutes } from "./http-routes.js";
import { modelService } from "./model-service.js";
import { listenOnePort, readTlsFiles, type OnePortServer } from "./one-port-server.js";
import type { RouterOptions } from "./options.js";
import { registerReflection } from "./reflection.js";
import { withRetryAfter } from "./retry-after.js";
import { ShardPool } from "./shard-pool.js";
import { routerTelemetry } from "./telemetry/router-telemetry.js";

/** The services that serve users, each reported by health checking under its full name. */
function registerServices(router: ConnectRouter, pool: ShardPool, adapters: AdapterForwarder): string[] {
  router
    .service(GenerateService, generateService(pool))
    .service(ModelService, modelService(pool))
    .service(AdapterService, adapterService(adapters));
  return [GenerateService.typeName, ModelService.typeName, AdapterService.typeName];
}

export interface RunningRouter extends OnePortServer {
  /** Stops admitting, lets requests in flight finish for `graceMs`, then ends the rest (router/drain.ts). */
  drain(graceMs: number): Promise<void>;
}

export async function startRouter(options: RouterOptions): Promise<RunningRouter> {
  const telemetry = routerTelemetry(options, () => pool.groupStatuses());
  // One of --api-processes: a scrape here answers every process's sum (router/api-processes.ts).
  if ((options.apiProcesses ?? 1) > 1 && cluster.isWorker) telemetry.metrics.set.aggregateAcrossProcesses();
  const shardToken = options.shardTokenFile ? readShardToken(options.shardTokenFile) : null;
  const pool = new ShardPool(options.shardUris, telemetry, shardToken, options.shardGroupNames);
  const adapters = new AdapterForwarder(pool, new AdminAuth(options.adminToken ?? null));
  const routeSettings = { pool, maxBodyBytes: options.maxBodyBytes };
  let stopHealth = (): void => {};
  let healthStatuses: HealthStatuses | undefined;
  const handler = connectNodeAdapter({
    routes: (router) => {
      const health = syncHealth(pool, registerServices(router, pool, adapters));
      stopHealth = health.stop;
      healthStatuses = health.statuses;
      registerHealth(router, health.statuses);
      registerReflection(router);
    },
    fallback: adapterRoutes(adapters, routeSettings, httpRoutes(routeSettings)),
    readMaxBytes: options.maxBodyBytes,
  });
  const drain = new Drain();
  let server: OnePortServer;
  try {
    server = await listenOnePort(telemetry.handler(withRetryAfter(drain.admit(handler))), options.port, options.hostname, options.tls ? readTlsFiles(options.tls) : null);
  } catch (err) {
    stopHealth();
    pool.close();
    throw err;
  }
  return {
    port: server.port,
    drain: async (graceMs) => {
      // The shards' views no longer decide: a load balancer must see this router go.
      stopHealth();
      for (const [service] of healthStatuses?.entries() ?? []) healthStatuses!.set(service, ServingStatus.NOT_SERVING);
      await drain.drain(graceMs, () => pool.endInFlight());
    },
    close: async () => {
      stopHealth();
      await server.close();
      pool.close();
    },
  };
}

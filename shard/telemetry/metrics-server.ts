// GET /metrics of one metric set on its own port: the shard's engine metrics, or a follower rank's.
import { createServer, type Server } from "node:http";
import { listen } from "../../common/listen.js";
import type { Logger } from "../../telemetry/logger.js";
import { answerMetrics, isMetricsRequest } from "../../telemetry/metrics-endpoint.js";
import type { MetricSet } from "../../telemetry/metric-set.js";

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** Serves GET /metrics on `host:port` (0 picks a free port). */
export async function serveMetricSet(set: MetricSet, port: number, host: string, logger: Logger): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    if (isMetricsRequest(request.method, request.url)) {
      answerMetrics(set, response, logger);
    } else {
      response.writeHead(404);
      response.end();
    }
  });
  const boundPort = await listen(server, port, host);
  return {
    port: boundPort,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

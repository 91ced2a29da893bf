// GET /metrics: the Prometheus text exposition of a MetricSet, for the router's public port and a shard's
// metrics port alike.
import type { Logger } from "./logger.js";
import type { MetricSet } from "./metric-set.js";

/** The part of node's http and http2 responses that an answer needs. */
export interface MetricsResponse {
  writeHead(status: number, headers?: Record<string, string>): unknown;
  end(body: string): unknown;
}

export function isMetricsRequest(method: string | undefined, url: string | undefined): boolean {
  return method === "GET" && (url === "/metrics" || url?.startsWith("/metrics?") === true);
}

export function answerMetrics(metrics: MetricSet, response: MetricsResponse, logger: Logger): void {
  metrics.exposition().then(
    ({ contentType, body }) => {
      response.writeHead(200, { "content-type": contentType });
      response.end(body);
    },
    (error: unknown) => {
      logger.error("metrics collection failed", { error: String(error) });
      response.writeHead(500);
      response.end("");
    },
  );
}

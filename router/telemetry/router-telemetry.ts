// The router's observability in one place: its logger, metrics and tracer; the observer that measures every
// Generate attempt on a shard group; and the request handler that serves /metrics and continues a client's trace.
import { context, propagation, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import type { NodeHandler } from "../node-handler.js";
import { Logger } from "../../telemetry/logger.js";
import { answerMetrics, isMetricsRequest } from "../../telemetry/metrics-endpoint.js";
import { DEFAULT_TELEMETRY, type TelemetryOptions } from "../../telemetry/options.js";
import { ObservedAttempts } from "./observed-attempts.js";
import { RouterMetrics, type GroupStatus } from "./router-metrics.js";

export class RouterTelemetry {
  readonly metrics: RouterMetrics;
  private readonly tracer = trace.getTracer("loraserve-router");

  constructor(
    readonly logger: Logger,
    maxAdapters: number,
    readGroups: () => GroupStatus[],
  ) {
    this.metrics = new RouterMetrics(maxAdapters, readGroups);
  }

  /** Measures and traces one request's Generate attempts, as the failover loop reports them. */
  observeAttempts(): ObservedAttempts {
    return new ObservedAttempts({ tracer: this.tracer, metrics: this.metrics, logger: this.logger });
  }

  /**
   * Wraps the router's request handler: GET /metrics is answered here; every other request runs in the
   * context of the caller's `traceparent` (an HTTP header, or gRPC metadata, which is an HTTP/2 header).
   */
  handler(inner: NodeHandler): NodeHandler {
    return (request, response) => {
      if (isMetricsRequest(request.method, request.url)) {
        answerMetrics(this.metrics.set, response, this.logger);
        return;
      }
      context.with(propagation.extract(ROOT_CONTEXT, request.headers), () => inner(request, response));
    };
  }
}

/** The router's telemetry as its options ask; `readGroups` is called lazily (the pool is built with the telemetry). */
export function routerTelemetry(options: Partial<TelemetryOptions>, readGroups: () => GroupStatus[]): RouterTelemetry {
  const logger = new Logger("router", options.logLevel ?? DEFAULT_TELEMETRY.logLevel);
  return new RouterTelemetry(logger, options.metricsMaxAdapters ?? DEFAULT_TELEMETRY.metricsMaxAdapters, readGroups);
}

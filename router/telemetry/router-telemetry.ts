// The router's observability in one place: its logger, metrics and tracer; the wrapper that measures every
// Generate call to a shard group; and the request handler that serves /metrics and continues a client's trace.
import { context, propagation, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import type { NodeHandler } from "../node-handler.js";
import type { ShardClient } from "../shard-client.js";
import { Logger } from "../../telemetry/logger.js";
import { answerMetrics, isMetricsRequest } from "../../telemetry/metrics-endpoint.js";
import { DEFAULT_TELEMETRY, type TelemetryOptions } from "../../telemetry/options.js";
import { ObservedCall, type Route } from "./observed-call.js";
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

  /** The group's client, with Generate measured and traced as routed to `route`. */
  observe(client: ShardClient, route: Route): ShardClient {
    const observers = { tracer: this.tracer, metrics: this.metrics, logger: this.logger };
    return {
      ...client,
      generate: (request, options) => {
        const call = new ObservedCall(request, route, observers);
        return call.watch(context.with(call.context, () => client.generate(request, call.callOptions(options))));
      },
    };
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

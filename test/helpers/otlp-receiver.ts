// A real OTLP/HTTP receiver for tests: POST /v1/traces and /v1/metrics bodies are decoded with the OpenTelemetry
// project's own protobuf types (the generated root of @opentelemetry/otlp-transformer 0.215, the last release
// that ships it), never with our code. Other signals are answered and counted.
import { createRequire } from "node:module";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

interface ProtoAnyValue {
  stringValue?: string | null;
  boolValue?: boolean | null;
  intValue?: number | { toNumber(): number } | null;
  doubleValue?: number | null;
  arrayValue?: { values: ProtoAnyValue[] } | null;
}

interface ProtoSpan {
  traceId: Uint8Array;
  spanId: Uint8Array;
  parentSpanId: Uint8Array;
  name: string;
  attributes: { key: string; value: ProtoAnyValue }[];
  events: { name: string }[];
}

interface ExportTraceServiceRequest {
  resourceSpans: { resource?: { attributes: { key: string; value: ProtoAnyValue }[] }; scopeSpans: { spans: ProtoSpan[] }[] }[];
}

interface ProtoNumberPoint {
  attributes: { key: string; value: ProtoAnyValue }[];
  asInt?: number | { toNumber(): number } | null;
  asDouble?: number | null;
}

interface ExportMetricsServiceRequest {
  resourceMetrics: {
    resource?: { attributes: { key: string; value: ProtoAnyValue }[] };
    scopeMetrics: { metrics: { name: string; sum?: { dataPoints: ProtoNumberPoint[] } | null }[] }[];
  }[];
}

const root = createRequire(import.meta.url)("otlp-protobuf-root/build/src/generated/root.js") as {
  opentelemetry: {
    proto: {
      collector: {
        trace: { v1: { ExportTraceServiceRequest: { decode(bytes: Uint8Array): ExportTraceServiceRequest } } };
        metrics: { v1: { ExportMetricsServiceRequest: { decode(bytes: Uint8Array): ExportMetricsServiceRequest } } };
      };
    };
  };
};
const { ExportTraceServiceRequest } = root.opentelemetry.proto.collector.trace.v1;
const { ExportMetricsServiceRequest } = root.opentelemetry.proto.collector.metrics.v1;

export type AttributeValue = string | number | boolean | AttributeValue[] | null;

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  name: string;
  service: string;
  attributes: Record<string, AttributeValue>;
  events: string[];
}

function valueOf(value: ProtoAnyValue): AttributeValue {
  if (value.stringValue !== undefined && value.stringValue !== null) return value.stringValue;
  if (value.boolValue !== undefined && value.boolValue !== null) return value.boolValue;
  if (value.intValue !== undefined && value.intValue !== null) return typeof value.intValue === "number" ? value.intValue : value.intValue.toNumber();
  if (value.doubleValue !== undefined && value.doubleValue !== null) return value.doubleValue;
  if (value.arrayValue) return value.arrayValue.values.map(valueOf);
  return null;
}

function attributesOf(list: { key: string; value: ProtoAnyValue }[]): Record<string, AttributeValue> {
  return Object.fromEntries(list.map(({ key, value }) => [key, valueOf(value)]));
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

/** One data point of a sum (counter) as last exported: cumulative, so the latest export holds the total. */
export interface ReceivedSumPoint {
  service: string;
  metric: string;
  attributes: Record<string, AttributeValue>;
  value: number;
}

export interface OtlpReceiver {
  url: string;
  spans: ReceivedSpan[];
  /** Sum data points by service, metric and attributes, each replaced by later exports. */
  sums: Map<string, ReceivedSumPoint>;
  /** Requests per path (/v1/traces, /v1/metrics, ...). */
  requests: Map<string, number>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(port = 0): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const sums = new Map<string, ReceivedSumPoint>();
  const requests = new Map<string, number>();
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const path = request.url ?? "";
      requests.set(path, (requests.get(path) ?? 0) + 1);
      if (path === "/v1/traces") {
        for (const resourceSpans of ExportTraceServiceRequest.decode(Buffer.concat(chunks)).resourceSpans) {
          const service = String(attributesOf(resourceSpans.resource?.attributes ?? [])["service.name"] ?? "");
          for (const span of resourceSpans.scopeSpans.flatMap((scope) => scope.spans)) {
            spans.push({
              traceId: hex(span.traceId),
              spanId: hex(span.spanId),
              parentSpanId: hex(span.parentSpanId ?? new Uint8Array()),
              name: span.name,
              service,
              attributes: attributesOf(span.attributes),
              events: span.events.map((event) => event.name),
            });
          }
        }
      }
      if (path === "/v1/metrics") {
        for (const resourceMetrics of ExportMetricsServiceRequest.decode(Buffer.concat(chunks)).resourceMetrics) {
          const service = String(attributesOf(resourceMetrics.resource?.attributes ?? [])["service.name"] ?? "");
          for (const metric of resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics)) {
            for (const point of metric.sum?.dataPoints ?? []) {
              const attributes = attributesOf(point.attributes);
              const value = valueOf({ intValue: point.asInt, doubleValue: point.asDouble }) as number;
              sums.set(JSON.stringify([service, metric.name, attributes]), { service, metric: metric.name, attributes, value });
            }
          }
        }
      }
      // An empty ExportServiceResponse: full success.
      response.writeHead(200, { "content-type": "application/x-protobuf" });
      response.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    sums,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

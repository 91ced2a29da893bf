// OpenTelemetry for one loraserve process, configured only by the standard OTEL_* environment variables
// (exporters, endpoints, protocols: OTLP over HTTP/protobuf, HTTP/JSON or gRPC). Nothing starts unless the
// environment names an exporter or an OTLP endpoint, so an unconfigured server pays nothing. An unreachable
// collector only costs failed exports, reported as warnings: the SDK never throws into request handling.
import { diag, DiagLogLevel } from "@opentelemetry/api";
import { NodeSDK } from "@opentelemetry/sdk-node";
import type { Logger } from "./logger.js";

export interface OpenTelemetry {
  /** Exports what is buffered (bounded in time: a dead collector must not hold up shutdown). */
  shutdown(): Promise<void>;
}

/**
 * How long shutdown waits for the last export: long enough for a loaded 2-core machine to deliver it (3 s was
 * seen to fall short there), well inside the launcher's 10 s before it kills a child that does not stop.
 */
const SHUTDOWN_LIMIT_MS = 5000;

function listOf(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((part) => part.trim().toLowerCase())
    .filter((part) => part !== "");
}

/** True when the environment asks for traces or metrics to leave the process. */
export function openTelemetryRequested(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return false;
  const exporters = [...listOf(env.OTEL_TRACES_EXPORTER), ...listOf(env.OTEL_METRICS_EXPORTER)];
  if (exporters.some((name) => name !== "none")) return true;
  return [env.OTEL_EXPORTER_OTLP_ENDPOINT, env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT].some(
    (value) => value !== undefined && value.trim() !== "",
  );
}

/**
 * Starts the SDK when the environment asks for it; null otherwise. Must run before any tracer or meter is
 * taken from the API, or those stay no-ops.
 */
export function startOpenTelemetry(serviceName: string, logger: Logger, env: NodeJS.ProcessEnv = process.env): OpenTelemetry | null {
  if (!openTelemetryRequested(env)) return null;
  const sdk = new NodeSDK({
    // OTEL_SERVICE_NAME wins when set: the SDK's env detector reads it.
    serviceName: env.OTEL_SERVICE_NAME ? undefined : serviceName,
    // Logs are JSON lines on stderr (telemetry/logger.ts), not OTel log records: no logs exporter.
    logRecordProcessors: [],
    instrumentations: [],
  });
  // OTEL_LOG_LEVEL gives the SDK its own console logger; otherwise its warnings (failed exports) become ours.
  if (env.OTEL_LOG_LEVEL === undefined) {
    diag.setLogger(
      {
        error: (message) => logger.warn("opentelemetry", { detail: message }),
        warn: (message) => logger.warn("opentelemetry", { detail: message }),
        info: () => undefined,
        debug: () => undefined,
        verbose: () => undefined,
      },
      DiagLogLevel.WARN,
    );
  }
  sdk.start();
  return {
    shutdown: async () => {
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_LIMIT_MS)));
      await Promise.race([sdk.shutdown().catch(() => undefined), limit]);
      clearTimeout(timer);
    },
  };
}

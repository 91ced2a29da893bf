// The observability flags every server process takes (router and shard; `loraserve serve` passes them to both).
import { parseLogLevel, type LogLevel } from "./logger.js";

export interface TelemetryOptions {
  logLevel: LogLevel;
  /** Adapters that keep their own `adapter` label in metrics; the rest report as `other`. */
  metricsMaxAdapters: number;
}

export const DEFAULT_TELEMETRY: TelemetryOptions = { logLevel: "info", metricsMaxAdapters: 32 };

/** Usage lines of the flags below, their descriptions starting at `column` as in the command's own usage. */
export function telemetryUsage(column: number): string {
  return [
    ["--log-level L", `error, warn, info or debug: JSON log lines on stderr (default ${DEFAULT_TELEMETRY.logLevel})`],
    ["--metrics-max-adapters N", `busiest adapters with their own metrics label, the rest are "other" (default ${DEFAULT_TELEMETRY.metricsMaxAdapters})`],
  ]
    .map(([flag, text]) => `  ${flag!.padEnd(column - 3)} ${text}`)
    .join("\n");
}

/** parseArgs option specs of the flags above. */
export const TELEMETRY_FLAGS = {
  "log-level": { type: "string" },
  "metrics-max-adapters": { type: "string" },
} as const;

export function parseTelemetryOptions(values: { "log-level"?: string; "metrics-max-adapters"?: string }): TelemetryOptions {
  const max = values["metrics-max-adapters"];
  const metricsMaxAdapters = max === undefined ? DEFAULT_TELEMETRY.metricsMaxAdapters : Number(max);
  if (!/^\d+$/.test(max?.trim() ?? "0") || !Number.isSafeInteger(metricsMaxAdapters)) {
    throw new Error(`--metrics-max-adapters must be a non-negative integer, got ${JSON.stringify(max)}`);
  }
  return { logLevel: values["log-level"] === undefined ? DEFAULT_TELEMETRY.logLevel : parseLogLevel(values["log-level"]), metricsMaxAdapters };
}

// The observability flags every server process takes (router and shard; `loraserve serve` passes them to both).
import { flagOrEnv } from "../common/flag-or-env.js";
import { parseInteger } from "../common/parse-integer.js";
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

export function parseTelemetryOptions(
  values: { "log-level"?: string; "metrics-max-adapters"?: string },
  env: NodeJS.ProcessEnv,
): TelemetryOptions {
  const logLevel = flagOrEnv("log-level", values["log-level"], env);
  const max = flagOrEnv("metrics-max-adapters", values["metrics-max-adapters"], env);
  let metricsMaxAdapters: number;
  try {
    metricsMaxAdapters = parseInteger(max, 0) ?? DEFAULT_TELEMETRY.metricsMaxAdapters;
  } catch {
    // This flag's refusal has always said "non-negative"; parseInteger says ">= 0".
    throw new Error(`${max!.source} must be a non-negative integer, got ${JSON.stringify(max!.text)}`);
  }
  return { logLevel: logLevel === undefined ? DEFAULT_TELEMETRY.logLevel : parseLogLevel(logLevel.text, logLevel.source), metricsMaxAdapters };
}

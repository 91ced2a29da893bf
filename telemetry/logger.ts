// Structured logs: one JSON object per line on stderr (stdout carries the ready line the launcher reads), with
// the trace and span ids of the active span, so a log line leads to its trace.
import { trace, type SpanContext } from "@opentelemetry/api";

export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `source`: the flag or variable the text came from, which the error names. */
export function parseLogLevel(text: string, source: string): LogLevel {
  const level = LOG_LEVELS.find((name) => name === text.trim().toLowerCase());
  if (level === undefined) throw new Error(`${source} must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(text)}`);
  return level;
}

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export class Logger {
  private readonly threshold: number;

  constructor(
    readonly service: string,
    readonly level: LogLevel,
    private readonly write: (line: string) => void = (line) => process.stderr.write(line),
  ) {
    this.threshold = LOG_LEVELS.indexOf(level);
  }

  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) <= this.threshold;
  }

  /** `span` names the span the line belongs to when it is not the active one (e.g. at the end of a stream). */
  log(level: LogLevel, msg: string, fields: LogFields = {}, span: SpanContext | undefined = trace.getActiveSpan()?.spanContext()): void {
    if (!this.enabled(level)) return;
    const ids = span && trace.isSpanContextValid(span) ? { trace_id: span.traceId, span_id: span.spanId } : {};
    this.write(`${JSON.stringify({ time: new Date().toISOString(), level, service: this.service, msg, ...ids, ...fields })}\n`);
  }

  error(msg: string, fields?: LogFields): void {
    this.log("error", msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    this.log("warn", msg, fields);
  }

  info(msg: string, fields?: LogFields): void {
    this.log("info", msg, fields);
  }

  debug(msg: string, fields?: LogFields): void {
    this.log("debug", msg, fields);
  }
}

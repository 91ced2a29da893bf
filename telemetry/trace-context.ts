// W3C trace context across our own hops. Connect metadata (gRPC metadata is HTTP/2 headers) carries
// `traceparent`/`tracestate`; the propagator registered by the SDK (OTEL_PROPAGATORS, W3C by default) writes and
// reads them. With OpenTelemetry off no propagator is registered and these do nothing.
import { context, propagation, ROOT_CONTEXT, type Context } from "@opentelemetry/api";
import type { Interceptor } from "@connectrpc/connect";

const headersSetter = {
  set(carrier: Headers, key: string, value: string): void {
    carrier.set(key, value);
  },
};

const headersGetter = {
  get(carrier: Headers, key: string): string | undefined {
    return carrier.get(key) ?? undefined;
  },
  keys(carrier: Headers): string[] {
    return [...carrier.keys()];
  },
};

/** Client side: every call carries the context active when it was made. */
export const propagateTraceContext: Interceptor = (next) => (request) => {
  propagation.inject(context.active(), request.header, headersSetter);
  return next(request);
};

/** Server side: the caller's context from Connect request headers (ROOT_CONTEXT's children when absent). */
export function extractTraceContext(headers: Headers): Context {
  return propagation.extract(ROOT_CONTEXT, headers, headersGetter);
}

// One Generate request's attempts as the router's telemetry sees them: each group's call is an ObservedCall,
// and router/failover.ts, which alone decides how an attempt ended, reports that here to end the call.
import { context } from "@opentelemetry/api";
import type { CallOptions } from "@connectrpc/connect";
import type { GenerateStreamResponse } from "../../gen/loraserve/v1/generate_pb.js";
import type { AttemptOutcome, FailoverObserver } from "../failover.js";
import type { GenerateCall } from "../cancel-by-message.js";
import { ObservedCall, type CallObservers, type GenerateInput, type Route } from "./observed-call.js";

export class ObservedAttempts implements FailoverObserver {
  /** By the group's URI, which the failover loop reports attempts by: a request tries each group at most once. */
  private readonly calls = new Map<string, ObservedCall>();

  constructor(private readonly observers: CallObservers) {}

  /** The group's Generate, measured and traced as routed to `route`. */
  generate(generate: GenerateCall, request: GenerateInput, route: Route, options: CallOptions): AsyncIterable<GenerateStreamResponse> {
    const call = new ObservedCall(request, route, this.observers);
    this.calls.set(route.uri, call);
    return call.watch(context.with(call.context, () => generate(request, call.callOptions(options))));
  }

  attempt(groupUri: string, outcome: AttemptOutcome): void {
    this.calls.get(groupUri)?.settle(outcome);
  }
}

// gRPC health checking (grpc.health.v1.Health), the protocol load balancers, Kubernetes gRPC probes and
// grpc_health_probe speak. The router decides what is healthy and records it in a HealthStatuses; the service
// only reports it, with grpc-go's semantics (https://github.com/grpc/grpc/blob/master/doc/health-checking.md).
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";

export { ServingStatus };

/** Upstream's limit: a List above it fails with RESOURCE_EXHAUSTED rather than sending a huge message. */
const LIST_LIMIT = 100;

/**
 * The serving status of the server as a whole (service "") and of each named service. A service the map has
 * never been told about is unknown to health clients.
 */
export class HealthStatuses {
  private readonly statuses: Map<string, ServingStatus>;
  private readonly listeners = new Set<() => void>();

  constructor(initial: Record<string, ServingStatus>) {
    this.statuses = new Map(Object.entries(initial));
  }

  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  set(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const listener of this.listeners) listener();
  }

  entries(): [string, ServingStatus][] {
    return [...this.statuses];
  }

  /** Calls listener after every change of any service; returns the function that stops the calls. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** The status of one service now and after every change, until the signal aborts. */
async function* watchStatus(statuses: HealthStatuses, service: string, signal: AbortSignal): AsyncIterable<ServingStatus> {
  let wake = (): void => {};
  const stopListening = statuses.onChange(() => wake());
  const left = new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
  try {
    let sent: ServingStatus | undefined;
    while (!signal.aborted) {
      // Armed before reading the status, so a change between the read and the wait still wakes us.
      const changed = new Promise<void>((resolve) => (wake = resolve));
      const status = statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
      if (status !== sent) {
        sent = status;
        yield status;
      }
      await Promise.race([changed, left]);
    }
  } finally {
    stopListening();
  }
}

/** Serves grpc.health.v1.Health (Check, List, Watch) on the router, reporting what `statuses` holds. */
export function registerHealth(router: ConnectRouter, statuses: HealthStatuses): ConnectRouter {
  return router.service(Health, {
    check(request) {
      const status = statuses.get(request.service);
      if (status === undefined) throw new ConnectError(`unknown service "${request.service}"`, Code.NotFound);
      return { status };
    },
    list() {
      const entries = statuses.entries();
      if (entries.length > LIST_LIMIT) {
        throw new ConnectError(`${entries.length} services exceed the List limit of ${LIST_LIMIT}`, Code.ResourceExhausted);
      }
      return { statuses: Object.fromEntries(entries.map(([service, status]) => [service, { status }])) };
    },
    async *watch(request, context) {
      for await (const status of watchStatus(statuses, request.service, context.signal)) yield { status };
    },
  });
}

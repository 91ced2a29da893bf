// The metrics of a server that runs as several processes (the router's --api-processes, node:cluster): each process
// records its own, and a scrape, whichever process it reaches, is answered with the primary process's sum of them
// all (prom-client's AggregatorRegistry, which asks every process through messages of its own). A gauge that every
// process reads from the same source (the shard groups' Status) takes the largest reading instead
// (MetricSet.observedGauge).
import cluster from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";

const REQUEST = "loraserve:cluster-metrics";
/** Longer than prom-client's own 5 s wait for the processes, so that its error is the one reported. */
const REPLY_TIMEOUT_MS = 10_000;
const REPLY = "loraserve:cluster-metrics-reply";

interface Reply {
  type: typeof REPLY;
  id: number;
  body?: string;
  error?: string;
}

const isMessage = <T extends { type: string }>(message: unknown, type: T["type"]): message is T =>
  typeof message === "object" && message !== null && (message as { type?: unknown }).type === type;

/** In the primary: answers each process's request for the sum of every process's metrics. */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on("message", (worker, message: unknown) => {
    if (!isMessage<{ type: typeof REQUEST; id: number }>(message, REQUEST)) return;
    const reply = (fields: Omit<Reply, "type" | "id">): void => void worker.send({ type: REPLY, id: message.id, ...fields });
    aggregator.clusterMetrics().then(
      (body) => reply({ body }),
      (error: unknown) => reply({ error: String(error) }),
    );
  });
}

/**
 * In a process the primary started: `registry` is what the primary collects from it; returns what answers a scrape
 * here (the exposition of every process's sum).
 */
export function joinClusterMetrics(registry: Registry): () => Promise<string> {
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one is what makes prom-client answer the primary's requests in this process (its addListeners).
  new AggregatorRegistry();
  let nextId = 0;
  const pending = new Map<number, { resolve: (body: string) => void; reject: (error: Error) => void }>();
  process.on("message", (message: unknown) => {
    if (!isMessage<Reply>(message, REPLY)) return;
    const waiting = pending.get(message.id);
    pending.delete(message.id);
    if (message.body !== undefined) waiting?.resolve(message.body);
    else waiting?.reject(new Error(`the primary process could not collect the metrics: ${message.error ?? "no answer"}`));
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`the primary process did not answer within ${REPLY_TIMEOUT_MS} ms`));
      }, REPLY_TIMEOUT_MS);
      const settle = <T>(done: (value: T) => void) => (value: T): void => {
        clearTimeout(timer);
        done(value);
      };
      pending.set(id, { resolve: settle(resolve), reject: settle(reject) });
      process.send!({ type: REQUEST, id });
    });
}

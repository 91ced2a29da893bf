// The shard's observability in one place: logger, tracer and engine metrics; the engine wrapper that times
// steps and adapter loads; the trace of each request; and the metrics port.
import { createServer, type Server } from "node:http";
import { listen } from "../../common/listen.js";
import type { HandlerContext } from "@connectrpc/connect";
import { context, trace } from "@opentelemetry/api";
import type { GenerateRequest } from "../../gen/loraserve/v1/generate_pb.js";
import { basename, dirname, resolve } from "node:path";
import type { AdapterWeights, NativeEngine } from "../../native/addon.js";
import type { ProgressSink } from "../../telemetry/progress.js";
import { ATTR, operationName, SHARD_HEADER } from "../../telemetry/attributes.js";
import type { Logger } from "../../telemetry/logger.js";
import { answerMetrics, isMetricsRequest } from "../../telemetry/metrics-endpoint.js";
import { extractTraceContext } from "../../telemetry/trace-context.js";
import type { LlmEngine, TokenEvent } from "../engine/llm-engine.js";
import type { SequenceObserver } from "../engine/sequence-observer.js";
import type { SequenceRequest } from "../engine/sequence.js";

/** An adapter as named on the command line. */
export interface AdapterSource {
  id: string;
  dir: string;
}
import { ObservedEngine } from "./observed-engine.js";
import { SequenceTrace } from "./sequence-trace.js";
import { ShardMetrics } from "./shard-metrics.js";

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** Where the shard's adapters live, to name the adapter whose weights the engine loads. */
export interface AdapterDirectory {
  list(): { id: string; dir: string }[];
}

export class ShardTelemetry {
  readonly metrics: ShardMetrics;
  private readonly tracer = trace.getTracer("loraserve-shard");
  private observed: ObservedEngine | null = null;
  private directory: AdapterDirectory | null = null;

  constructor(
    readonly logger: Logger,
    maxAdapters: number,
    private readonly modelId: string,
    private readonly progress: ProgressSink,
  ) {
    this.metrics = new ShardMetrics(maxAdapters);
  }

  /** Reports the base model's loading (one step: the engine maps or uploads every weight). */
  loadingModel<T>(load: () => T): T {
    this.progress.update("loading model", 0, 1);
    const loaded = load();
    this.progress.update("loading model", 1, 1);
    return loaded;
  }

  /**
   * The engine with its steps and adapter loads measured. `startup` are the adapters named on the command line:
   * their loads are reported as progress, and they name adapters until the registry exists (watch()).
   */
  observeEngine(engine: NativeEngine, startup: readonly AdapterSource[]): NativeEngine {
    const dirs = new Map(startup.map(({ id, dir }) => [resolve(dir), id]));
    let loaded = 0;
    if (startup.length > 0) this.progress.update("loading adapters", 0, startup.length);
    this.observed = new ObservedEngine(
      engine,
      { metrics: this.metrics, tracer: this.tracer, logger: this.logger },
      (weights) => this.adapterOf(weights, dirs),
      () => {
        if (this.directory === null && loaded < startup.length) this.progress.update("loading adapters", ++loaded, startup.length);
      },
    );
    return this.observed.engine;
  }

  /** Registers the series read from the running engine loop; `adapters` names adapters from now on. */
  watch(llm: LlmEngine, adapters: AdapterDirectory, maxSlots: number): void {
    this.directory = adapters;
    this.metrics.watch(llm, () => this.observed?.residentAdapters() ?? [], maxSlots);
  }

  /** An adapter's weights file lies in its directory. */
  private adapterOf(weights: AdapterWeights, startup: ReadonlyMap<string, string>): string {
    const dir = dirname(weights.pairs[0]?.a.file ?? "");
    return this.directory?.list().find((adapter) => resolve(adapter.dir) === dir)?.id ?? startup.get(dir) ?? basename(dir);
  }

  /**
   * Submits one request the shard accepted, traced: the submission runs in the caller's trace context (so an
   * adapter load it starts is part of that trace), the engine reports to the trace, and the events pass through it.
   */
  submit(
    request: GenerateRequest,
    sequence: SequenceRequest,
    handler: HandlerContext,
    submit: (observer: SequenceObserver | undefined) => AsyncIterable<TokenEvent>,
  ): AsyncIterable<TokenEvent> {
    const sequenceTrace = this.sequence(request, sequence, handler);
    return sequenceTrace.watch(context.with(sequenceTrace.parent, () => submit(sequenceTrace)));
  }

  /** The trace of one request. Tells the router (response header) whether the adapter was resident when it came. */
  private sequence(request: GenerateRequest, sequence: SequenceRequest, handler: HandlerContext): SequenceTrace {
    const resident = this.observed?.isResident(request.adapterId) ?? true;
    handler.responseHeader.set(SHARD_HEADER.adapterResident, String(resident));
    this.metrics.labels.count(request.adapterId);
    return new SequenceTrace({
      tracer: this.tracer,
      logger: this.logger,
      parent: extractTraceContext(handler.requestHeader),
      promptTokens: sequence.promptIds.length,
      handler,
      attributes: {
        [ATTR.operationName]: operationName(request),
        [ATTR.requestModel]: this.modelId,
        [ATTR.adapterId]: request.adapterId,
        [ATTR.adapterResident]: resident,
        [ATTR.requestMaxTokens]: sequence.maxNewTokens,
      },
    });
  }

  /** Serves GET /metrics on `host:port` (0 picks a free port). */
  async serveMetrics(port: number, host: string): Promise<MetricsServer> {
    const server: Server = createServer((request, response) => {
      if (isMetricsRequest(request.method, request.url)) {
        answerMetrics(this.metrics.set, response, this.logger);
      } else {
        response.writeHead(404);
        response.end();
      }
    });
    const boundPort = await listen(server, port, host);
    return {
      port: boundPort,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    };
  }
}

/** `submit` observed when the shard has telemetry (a test may build a server without). */
export function submitObserved(
  telemetry: ShardTelemetry | undefined,
  ...[request, sequence, handler, submit]: Parameters<ShardTelemetry["submit"]>
): AsyncIterable<TokenEvent> {
  return telemetry ? telemetry.submit(request, sequence, handler, submit) : submit(undefined);
}

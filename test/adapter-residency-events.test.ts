// The registry's residency listeners, on the real engine with one slot: every listener hears each slot load
// and eviction with the adapter's id, the registry answers which adapters are in a slot, and telemetry's
// `adapter.load` span is a child of the request trace that made the load happen, its eviction counted.
import { AsyncLocalStorage } from "node:async_hooks";
import { join } from "node:path";
import { context, ROOT_CONTEXT, trace, type Context, type ContextManager } from "@opentelemetry/api";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createEngine, type NativeEngine } from "../native/addon.js";
import { AdapterRegistry } from "../shard/adapters/registry.js";
import type { ResidencyListener } from "../shard/engine/adapter-residency.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { ShardMetrics } from "../shard/telemetry/shard-metrics.js";
import { SlotTelemetry } from "../shard/telemetry/slot-telemetry.js";
import { Logger } from "../telemetry/logger.js";
import { registryOptions } from "./helpers/adapter-registry.js";
import { PROJECT_ROOT } from "./helpers/fixture-sets.js";

const DEMO = join(PROJECT_ROOT, "fixtures", "demo");

/** The context follows async calls, as the SDK's AsyncLocalStorage manager makes it do in the shard. */
class AsyncContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    return this.storage.run(ctx, () => fn.call(thisArg, ...args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    return this;
  }
}

/** A listener that writes down what it hears. */
function recorder(heard: string[]): ResidencyListener {
  return {
    loaded: (id, { slot, rank }) => heard.push(`loaded ${id} slot ${slot} rank ${rank}`),
    evicted: (id, slot) => heard.push(`evicted ${id} slot ${slot}`),
    failed: (id, error) => heard.push(`failed ${id}: ${error.message}`),
  };
}

describe("residency listeners", () => {
  let engine: NativeEngine;
  let registry: AdapterRegistry;
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const metrics = new ShardMetrics(8);
  const first: string[] = [];
  const second: string[] = [];
  const progress: string[] = [];

  beforeAll(async () => {
    context.setGlobalContextManager(new AsyncContextManager());
    const model = loadModelFiles(join(DEMO, "model"));
    engine = createEngine({ device: "cpu", rank: 0, world: 1, spec: model.spec, weights: model.weights, numKvBlocks: 8, blockSize: 16, maxLoras: 1, maxLoraRank: 64, threads: 1 });
    const sources = ["sql", "tone"].map((id) => ({ id, dir: join(DEMO, "adapters", id) }));
    // Listening from the opening on, as the shard does: the start-up load of the one slot is heard too.
    registry = await AdapterRegistry.open(engine, registryOptions(model.spec, { maxLoras: 1 }), sources, {
      listeners: [recorder(first), new SlotTelemetry(metrics, provider.getTracer("test"), new Logger("shard", "error"))],
      progress: { update: (task, done, total) => progress.push(`${task} ${done}/${total}`) },
    });
    registry.listen(recorder(second));
  });
  afterAll(async () => {
    engine?.close();
    await provider.shutdown();
    context.disable();
  });

  it("reports start-up progress per slot load (the one slot takes the first adapter; the second stays in host memory)", () => {
    expect(progress).toEqual(["loading adapters 0/2", "loading adapters 1/2"]);
  });

  it("tells every listener of each load and eviction, by id, while the registry says what is in the slot", async () => {
    expect(registry.deviceIds()).toEqual(["sql"]);
    const sqlRank = (await registry.get("sql")).config!.rank;
    const rank = (await registry.get("tone")).config!.rank;
    expect(first).toEqual([`loaded sql slot 0 rank ${sqlRank}`]);
    const parent = provider.getTracer("test").startSpan("request");
    context.with(trace.setSpan(context.active(), parent), () => registry.acquire("tone"));
    await vi.waitFor(() => expect(registry.slotOf("tone")).toBe(0));
    parent.end();

    expect(first).toEqual([`loaded sql slot 0 rank ${sqlRank}`, "evicted sql slot 0", `loaded tone slot 0 rank ${rank}`]);
    expect(second).toEqual(first.slice(1));
    expect(registry.deviceIds()).toEqual(["tone"]);
    expect(registry.slotOf("sql")).toBeNull();
    registry.release("tone");

    const loads = exporter.getFinishedSpans().filter((span) => span.name === "adapter.load");
    expect(loads.map((span) => span.attributes["loraserve.adapter.id"])).toEqual(["sql", "tone"]);
    const load = loads[1];
    expect(load?.parentSpanContext?.spanId, "the load's parent").toBe(parent.spanContext().spanId);
    expect(load?.attributes).toMatchObject({ "loraserve.adapter.id": "tone", "loraserve.adapter.slot": 0, "loraserve.adapter.rank": rank });
    const text = await metrics.set.registry.metrics();
    expect(text).toMatch(/loraserve_adapter_evictions_total\{adapter="sql"\} 1/);
    expect(text).toMatch(/loraserve_adapter_load_duration_seconds_count\{adapter="tone"\} 1/);
  });
});

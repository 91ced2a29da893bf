// The engine's metrics, served on the shard's metrics port: batch size and step time per step, KV blocks and
// sequences (read from the engine loop when collected), preemptions, the prefix cache's hits, and per adapter (label bounded by
// AdapterLabels): residency in an engine slot, load duration and evictions.
import { AdapterLabels } from "../../telemetry/adapter-labels.js";
import { MetricSet, type GaugeSample } from "../../telemetry/metric-set.js";
import type { LlmEngine } from "../engine/llm-engine.js";

const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const STEP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const LOAD_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class ShardMetrics {
  readonly set = new MetricSet("loraserve-shard");
  readonly labels: AdapterLabels;
  readonly batchSize = this.set.histogram("loraserve_engine_batch_size", "Sequences in each engine step", [], BATCH_BUCKETS);
  readonly stepDuration = this.set.histogram("loraserve_engine_step_duration_seconds", "Time of each engine step (one batched forward pass)", [], STEP_BUCKETS);
  readonly adapterLoadDuration = this.set.histogram(
    "loraserve_adapter_load_duration_seconds",
    "Time to copy an adapter into an engine slot",
    ["adapter"],
    LOAD_BUCKETS,
  );
  readonly adapterEvictions = this.set.counter("loraserve_adapter_evictions_total", "Adapters taken out of an engine slot", ["adapter"]);

  constructor(maxAdapters: number) {
    this.labels = new AdapterLabels(maxAdapters, (adapter) => void this.set.removeSeries("adapter", adapter));
  }

  /** The series read from the engine loop and the slots: registered once both exist. */
  watch(llm: LlmEngine, residentAdapters: () => string[], maxSlots: number): void {
    this.set.observedGauge("loraserve_engine_kv_blocks", "KV-cache blocks, used and free", ["state"], () => {
      const load = llm.load();
      return [
        { labels: { state: "used" }, value: load.totalKvBlocks - load.freeKvBlocks },
        { labels: { state: "free" }, value: load.freeKvBlocks },
      ];
    });
    this.set.observedGauge("loraserve_engine_sequences", "Sequences in the batch (running) or queue (waiting)", ["state"], () => {
      const load = llm.load();
      return [
        { labels: { state: "running" }, value: load.running },
        { labels: { state: "waiting" }, value: load.waiting },
      ];
    });
    this.set.observedCounter("loraserve_engine_preemptions_total", "Sequences preempted (KV cache freed, computed again later)", () => llm.preemptions);
    this.set.observedCounter(
      "loraserve_engine_prefix_cache_queried_tokens_total",
      "Tokens of admitted sequences looked up in the prefix cache",
      () => llm.prefixCache().queriedTokens,
    );
    this.set.observedCounter(
      "loraserve_engine_prefix_cache_hit_tokens_total",
      "Tokens of admitted sequences found in the prefix cache (their KV blocks reused, not computed)",
      () => llm.prefixCache().hitTokens,
    );
    this.set.observedGauge("loraserve_engine_prefix_cache_blocks", "Free KV blocks still holding a cached prefix (also counted free)", [], () => [
      { labels: {}, value: llm.prefixCache().cachedBlocks },
    ]);
    this.set.observedGauge("loraserve_adapter_resident", "Adapters in an engine slot (1 each; `other` sums the rest)", ["adapter"], () => {
      const perLabel = new Map<string, number>();
      for (const id of residentAdapters()) {
        const label = this.labels.labelOf(id);
        perLabel.set(label, (perLabel.get(label) ?? 0) + 1);
      }
      return [...perLabel].map(([adapter, value]): GaugeSample<"adapter"> => ({ labels: { adapter }, value }));
    });
    this.set.observedGauge("loraserve_engine_adapter_slots", "Engine adapter slots, used and free", ["state"], () => {
      const used = residentAdapters().length;
      return [
        { labels: { state: "used" }, value: used },
        { labels: { state: "free" }, value: maxSlots - used },
      ];
    });
  }
}

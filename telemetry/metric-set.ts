// A process's metrics, each recorded twice: in a prom-client registry (scraped from /metrics) and through the
// OpenTelemetry metrics API (exported over OTLP when the environment asks for it; the API's no-op meter
// otherwise, which costs a call). One definition, so the two views never disagree on names or buckets.
import { metrics, type Meter } from "@opentelemetry/api";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { joinClusterMetrics } from "./cluster-metrics.js";

export type LabelSet<L extends string> = Record<L, string>;

export interface CounterMetric<L extends string> {
  inc(labels: LabelSet<L>, value?: number): void;
}

export interface HistogramMetric<L extends string> {
  observe(labels: LabelSet<L>, value: number): void;
}

export interface GaugeSample<L extends string> {
  labels: LabelSet<L>;
  value: number;
}

type Removable = Counter | Gauge | Histogram;

/** OTel names carry no `_total` (its Prometheus exporter adds it back) and state the unit apart. */
function otelName(name: string): string {
  return name.replace(/_total$/, "");
}

function unitOf(name: string): string | undefined {
  return name.endsWith("_seconds") ? "s" : undefined;
}

export class MetricSet {
  readonly registry = new Registry();
  private readonly meter: Meter;
  private readonly removable: Removable[] = [];
  /** The exposition's text: this process's registry, or the cluster's sum (aggregateAcrossProcesses). */
  private collect: () => Promise<string> = () => this.registry.metrics();

  constructor(meterName: string) {
    this.meter = metrics.getMeter(meterName);
  }

  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): CounterMetric<L> {
    const prom = new Counter<L>({ name, help, labelNames, registers: [this.registry] });
    const otel = this.meter.createCounter(otelName(name), { description: help, unit: unitOf(name) });
    this.removable.push(prom);
    return {
      inc(labels, value = 1) {
        prom.inc(labels, value);
        otel.add(value, labels);
      },
    };
  }

  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets: readonly number[]): HistogramMetric<L> {
    const prom = new Histogram<L>({ name, help, labelNames, buckets: [...buckets], registers: [this.registry] });
    const otel = this.meter.createHistogram(otelName(name), { description: help, unit: unitOf(name), advice: { explicitBucketBoundaries: [...buckets] } });
    this.removable.push(prom);
    return {
      observe(labels, value) {
        prom.observe(labels, value);
        otel.record(value, labels);
      },
    };
  }

  /**
   * A gauge read when collected (each scrape, each OTLP export), so nothing is set on the request path.
   * `sameInEveryProcess`: every process of a multi-process server reads it from the same source, so their
   * metrics' sum (cluster-metrics.ts) takes the largest of their readings rather than adding them up (each process
   * asks on its own clock, so one may lag a beat: a group up in any view is up).
   */
  observedGauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    read: () => GaugeSample<L>[] | Promise<GaugeSample<L>[]>,
    sameInEveryProcess = false,
  ): void {
    new Gauge<L>({
      name,
      help,
      labelNames,
      aggregator: sameInEveryProcess ? "max" : "sum",
      registers: [this.registry],
      async collect() {
        const samples = await read();
        this.reset();
        for (const { labels, value } of samples) this.set(labels, value);
      },
    });
    this.meter.createObservableGauge(otelName(name), { description: help, unit: unitOf(name) }).addCallback(async (result) => {
      for (const { labels, value } of await read()) result.observe(value, labels);
    });
  }

  /** A running total kept elsewhere (e.g. the scheduler's preemptions), read when collected. */
  observedCounter(name: string, help: string, read: () => number): void {
    let reported = 0;
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        const total = read();
        this.inc(total - reported);
        reported = total;
      },
    });
    this.meter.createObservableCounter(otelName(name), { description: help }).addCallback((result) => result.observe(read()));
  }

  /** Drops every series whose `labelName` is `value`: an adapter that lost its own label. */
  async removeSeries(labelName: string, value: string): Promise<void> {
    for (const metric of this.removable) {
      const removed = new Set<string>();
      for (const sample of (await metric.get()).values) {
        if (sample.labels[labelName] !== value) continue;
        // Histogram samples add `le` per bucket: the series is the label set without it.
        const { le: _bucket, ...labels } = sample.labels;
        const key = JSON.stringify(labels);
        if (removed.has(key)) continue;
        removed.add(key);
        metric.remove(labels as Record<string, string>);
      }
    }
  }

  /** From now on a scrape of this process answers the sum over the processes of a cluster (cluster-metrics.ts). */
  aggregateAcrossProcesses(): void {
    this.collect = joinClusterMetrics(this.registry);
  }

  /** The Prometheus text exposition and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.collect() };
  }
}

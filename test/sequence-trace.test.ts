// The shard's view of one request's time in the queue: the wait before its first schedule and every wait back in
// the queue after a preemption, in the trailer the router's histogram reads, on the spans and in the log line.
import { ROOT_CONTEXT } from "@opentelemetry/api";
import type { HandlerContext } from "@connectrpc/connect";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { ATTR, SHARD_HEADER } from "../telemetry/attributes.js";
import { Logger } from "../telemetry/logger.js";
import type { TokenEvent } from "../shard/engine/llm-engine.js";
import type { ScheduledChunk } from "../shard/engine/scheduler.js";
import { SequenceTrace } from "../shard/telemetry/sequence-trace.js";

const PROMPT_TOKENS = 4;

function traced() {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const lines: string[] = [];
  const trailer = new Headers();
  const clock = { ms: 0 };
  const trace = new SequenceTrace({
    tracer: provider.getTracer("test"),
    logger: new Logger("shard", "debug", (line) => lines.push(line)),
    parent: ROOT_CONTEXT,
    attributes: {},
    promptTokens: PROMPT_TOKENS,
    handler: { responseTrailer: trailer } as HandlerContext,
    now: () => clock.ms,
  });
  return { exporter, lines, trailer, clock, trace };
}

/** A chunk of `numTokens` from `startPos`; the scheduler's sequence is not looked at by the trace. */
const chunk = (startPos: number, numTokens: number): ScheduledChunk => ({ seq: null as never, startPos, numTokens, sample: true, preemptionsBefore: 0 });

async function* tokens(count: number): AsyncGenerator<TokenEvent> {
  for (let i = 0; i < count; i++) yield { finish: i === count - 1 ? { reason: "length" } : undefined } as TokenEvent;
}

describe("queue time", () => {
  it("is the wait before the first schedule when nothing is preempted", async () => {
    const { exporter, trailer, clock, trace } = traced();
    clock.ms = 40;
    trace.scheduled(chunk(0, PROMPT_TOKENS), 1);
    for await (const _ of trace.watch(tokens(2))) clock.ms += 5;
    expect(trailer.get(SHARD_HEADER.queueSeconds)).toBe("0.04");
    expect(exporter.getFinishedSpans().find((span) => span.name === "prefill")!.attributes[ATTR.queueTimeMs]).toBe(40);
  });

  it("adds the time back in the queue after each preemption", async () => {
    const { exporter, lines, trailer, clock, trace } = traced();
    clock.ms = 10;
    trace.scheduled(chunk(0, PROMPT_TOKENS), 1);
    clock.ms = 20;
    trace.scheduled(chunk(PROMPT_TOKENS, 1), 2);
    trace.preempted();
    // 30 ms waiting to be recomputed.
    clock.ms = 50;
    trace.scheduled(chunk(0, PROMPT_TOKENS + 1), 1);
    clock.ms = 60;
    trace.preempted();
    // And 15 more.
    clock.ms = 75;
    trace.scheduled(chunk(0, PROMPT_TOKENS + 2), 1);
    for await (const _ of trace.watch(tokens(3))) clock.ms += 1;

    expect(trailer.get(SHARD_HEADER.queueSeconds)).toBe(String((10 + 30 + 15) / 1000));
    const decode = exporter.getFinishedSpans().find((span) => span.name === "decode")!;
    expect(decode.attributes[ATTR.queueTimeMs]).toBe(55);
    expect(decode.events.filter((event) => event.name === "rescheduled").map((event) => event.attributes?.["loraserve.requeue_time_ms"])).toEqual([30, 15]);
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ msg: "sequence", preemptions: 2, queue_ms: 55 });
  });
});

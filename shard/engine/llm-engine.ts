// The continuous-batching loop: while any sequence has work, schedule → one engine step → append the drawn
// tokens → emit them. Requests join and leave between steps; the engine runs one step at a time, so blocks
// freed while a step is in flight are only handed out again once that step is over.
import type { NativeEngine, SeqResult, SeqStep } from "../../native/addon.js";
import type { AdapterResidency } from "./adapter-residency.js";
import { checkAdmission, type AdmissionLimits } from "./admission.js";
import { AsyncQueue } from "./async-queue.js";
import { BlockManager } from "./block-manager.js";
import { Scheduler, type PrefixCacheCounts, type ScheduledChunk } from "./scheduler.js";
import { Sequence, type FinishReason, type GeneratedToken, type SequenceRequest, type TopToken } from "./sequence.js";
import type { SequenceObserver } from "./sequence-observer.js";

/**
 * An admission limit left out does not bound: the shard always gives both (shard/options.ts resolves their
 * defaults); an engine driven directly, by tests and benches, need not.
 */
export interface LlmEngineOptions extends Partial<AdmissionLimits> {
  numKvBlocks: number;
  blockSize: number;
  /** Most prompt tokens computed in one step; longer prompts are split across steps. */
  maxBatchPrefillTokens: number;
  /** Largest prompt + generated length of any sequence. */
  maxTotalTokens: number;
  eosTokenIds: ReadonlySet<number>;
  /** Which slot holds each adapter; a sequence waits in the queue until its adapter is in one. */
  adapters: AdapterResidency;
  /** Reuse the KV blocks of prompt prefixes computed before, per adapter version (default true; --disable-prefix-caching). */
  prefixCaching?: boolean;
}

/** One generated token; the last event of a sequence also says why it ended. */
export interface TokenEvent {
  token: GeneratedToken;
  finish: SequenceFinish | null;
}

export interface SequenceFinish {
  reason: Exclude<FinishReason, "cancelled">;
  /** Logprob of each prompt token (NaN for the first), when the request asked for them. */
  promptLogprobs: Float32Array | null;
}

/** The prefix cache since start, and the free blocks that still hold a cached prefix now. */
export interface PrefixCacheStats extends PrefixCacheCounts {
  cachedBlocks: number;
}

export interface EngineLoad {
  running: number;
  waiting: number;
  freeKvBlocks: number;
  totalKvBlocks: number;
}

export class ShuttingDownError extends Error {
  constructor(message = "the shard is shutting down") {
    super(message);
    this.name = "ShuttingDownError";
  }
}

export class LlmEngine {
  private readonly scheduler: Scheduler;
  private readonly outputs = new Map<Sequence, AsyncQueue<TokenEvent>>();
  private readonly observers = new Map<Sequence, SequenceObserver>();
  /** Preemptions since start (a running total for metrics). */
  private preemptionCount = 0;
  /** The running loop, null when idle. */
  private loop: Promise<void> | null = null;
  private closed = false;
  /** The sequences of the step in flight: their adapters are released only once it is over. */
  private stepping: ReadonlySet<Sequence> | null = null;
  private releasedDuringStep: string[] = [];
  private readonly admission: AdmissionLimits;

  constructor(
    /** Only steps: adapter loads are the registry's (shard/adapters/slot-tier.ts). */
    private readonly engine: Pick<NativeEngine, "step">,
    private readonly options: LlmEngineOptions,
  ) {
    this.admission = {
      maxConcurrentRequests: options.maxConcurrentRequests ?? Infinity,
      maxQueuedTokens: options.maxQueuedTokens ?? Infinity,
    };
    const blocks = new BlockManager(options.numKvBlocks, options.blockSize, options.prefixCaching ?? true);
    this.scheduler = new Scheduler(blocks, options.maxBatchPrefillTokens, (seq) => {
      this.preemptionCount++;
      this.observers.get(seq)?.preempted();
    }, (seq) => options.adapters.slotOf(seq.request.adapterId) !== null);
    options.adapters.listen({
      loaded: () => this.wake(),
      // A slot is only given up by an adapter no sequence uses: nothing queued here is affected.
      evicted: () => undefined,
      failed: (adapterId, error) => {
        for (const seq of [...this.outputs.keys()]) {
          if (seq.status === "waiting" && seq.request.adapterId === adapterId) this.end(seq, "cancelled", error);
        }
      },
    });
  }

  load(): EngineLoad {
    const { blocks } = this.scheduler;
    return {
      running: this.scheduler.numRunning,
      waiting: this.scheduler.numWaiting,
      freeKvBlocks: blocks.freeCount,
      totalKvBlocks: blocks.numBlocks,
    };
  }

  get preemptions(): number {
    return this.preemptionCount;
  }

  prefixCache(): PrefixCacheStats {
    return { ...this.scheduler.prefixCache, cachedBlocks: this.scheduler.blocks.cachedCount };
  }

  /**
   * Queues a request now and returns its tokens as they are drawn. Aborting `signal`, or leaving the
   * iteration early, removes the sequence and frees its blocks at once. `observer` hears when it is scheduled.
   * Throws OverloadedError when the shard is at an admission limit (admission.ts).
   */
  submit(request: SequenceRequest, signal?: AbortSignal, observer?: SequenceObserver): AsyncIterable<TokenEvent> {
    if (this.closed) throw new ShuttingDownError();
    if (request.promptIds.length + request.maxNewTokens > this.options.maxTotalTokens) {
      throw new Error(`prompt (${request.promptIds.length}) + max new tokens (${request.maxNewTokens}) exceeds ${this.options.maxTotalTokens} tokens`);
    }
    checkAdmission(
      this.admission,
      { admitted: this.outputs.size, queuedTokens: this.queuedTokens(), admittedByAdapter: this.admittedByAdapter() },
      request.adapterId,
      request.promptIds.length,
    );
    const { adapters } = this.options;
    adapters.acquire(request.adapterId);
    let seq: Sequence;
    try {
      // Read once acquired: the version cannot change while the sequence holds the adapter.
      seq = new Sequence(request, adapters.versionOf(request.adapterId));
      this.scheduler.add(seq);
    } catch (error) {
      adapters.release(request.adapterId);
      throw error;
    }
    const queue = new AsyncQueue<TokenEvent>();
    this.outputs.set(seq, queue);
    if (observer) this.observers.set(seq, observer);
    const cancel = (): void => this.end(seq, "cancelled");
    if (signal?.aborted) cancel();
    signal?.addEventListener("abort", cancel, { once: true });
    this.wake();
    return (async function* () {
      try {
        yield* queue;
      } finally {
        signal?.removeEventListener("abort", cancel);
        cancel();
      }
    })();
  }

  /** Requests queued or running, by adapter. */
  private admittedByAdapter(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const seq of this.outputs.keys()) counts.set(seq.request.adapterId, (counts.get(seq.request.adapterId) ?? 0) + 1);
    return counts;
  }

  /** Prompt tokens of the sequences waiting to be scheduled, preempted ones included. */
  private queuedTokens(): number {
    let total = 0;
    for (const seq of this.outputs.keys()) if (seq.status === "waiting") total += seq.promptLength;
    return total;
  }

  /** Refuses new requests, ends the ones in flight with ShuttingDownError and waits for the current step. */
  async close(): Promise<void> {
    this.closed = true;
    for (const seq of [...this.outputs.keys()]) this.end(seq, "cancelled", new ShuttingDownError());
    await this.loop;
  }

  private wake(): void {
    // Started on the next microtask, so requests submitted together land in the same first step.
    this.loop ??= Promise.resolve().then(() => this.run());
  }

  private async run(): Promise<void> {
    try {
      while (this.scheduler.hasWork()) {
        const chunks = this.scheduler.schedule();
        // Everything left waits for its adapter; the residency wakes the loop when one is in a slot.
        if (chunks.length === 0) break;
        for (const chunk of chunks) this.observers.get(chunk.seq)?.scheduled(chunk, chunks.length);
        const steps = chunks.map((chunk) => this.stepFor(chunk));
        let results: SeqResult[];
        this.stepping = new Set(chunks.map((chunk) => chunk.seq));
        try {
          results = await this.engine.step(steps);
        } catch (error) {
          // The step's sequences cannot go on (their cache is in an unknown state); the others can.
          for (const { seq } of chunks) this.end(seq, "cancelled", error);
          continue;
        } finally {
          this.stepping = null;
          for (const adapterId of this.releasedDuringStep.splice(0)) this.options.adapters.release(adapterId);
        }
        chunks.forEach((chunk, i) => this.apply(chunk, results[i] as SeqResult));
      }
    } catch (error) {
      // A bug in the loop itself: fail every request rather than leave its client waiting forever.
      for (const seq of [...this.outputs.keys()]) this.end(seq, "cancelled", error);
    } finally {
      this.loop = null;
    }
  }

  private stepFor({ seq, startPos, numTokens, sample }: ScheduledChunk): SeqStep {
    const { request } = seq;
    return {
      tokens: seq.tokens(startPos, numTokens),
      startPos,
      blockTable: Int32Array.from(seq.blockTable),
      adapterSlot: this.slotOf(seq),
      sample,
      sampling: { ...request.sampling, draw: seq.generated.length },
      ...(sample && penalises(request.sampling) ? { penaltyTokens: seq.tokens(0, seq.numTokens), penaltyPromptLength: seq.promptLength } : {}),
      topN: sample ? request.topN : 0,
      logprobTargets: this.promptTargets(seq, startPos, numTokens),
      returnLogits: false,
    };
  }

  /** Position i of the chunk predicts prompt token startPos + i + 1: ask for its logprob while inside the prompt. */
  private promptTargets(seq: Sequence, startPos: number, numTokens: number): Int32Array | null {
    if (!seq.promptLogprobs || startPos + 1 >= seq.promptLength) return null;
    const targets = new Int32Array(numTokens).fill(-1);
    for (let i = 0; i < numTokens && startPos + i + 1 < seq.promptLength; i++) targets[i] = seq.tokenAt(startPos + i + 1);
    return targets;
  }

  private apply(chunk: ScheduledChunk, result: SeqResult): void {
    const { seq } = chunk;
    if (seq.status === "finished") return; // cancelled while the step ran
    this.scheduler.computed(chunk);
    if (seq.promptLogprobs && result.targetLogprobs.length > 0) {
      // A preempted sequence computes its prompt again; the numbers are the same, so writing twice is harmless.
      const n = Math.min(chunk.numTokens, seq.promptLength - 1 - chunk.startPos);
      for (let i = 0; i < n; i++) seq.promptLogprobs[chunk.startPos + i + 1] = result.targetLogprobs[i] as number;
    }
    if (!chunk.sample) return;
    const token: GeneratedToken = { id: result.token, logprob: result.logprob, top: topTokens(result) };
    seq.generated.push(token);
    const reason = this.finishReason(seq, token.id);
    const queue = this.outputs.get(seq);
    queue?.push({ token, finish: reason ? { reason, promptLogprobs: seq.promptLogprobs } : null });
    if (reason) this.end(seq, reason);
  }

  private finishReason(seq: Sequence, token: number): SequenceFinish["reason"] | null {
    // Asked for every token, EOS included: the check follows the whole text.
    const stopped = seq.request.stopCheck?.stopsAt(token) ?? false;
    if (!seq.request.ignoreEos && this.options.eosTokenIds.has(token)) return "eos_token";
    if (stopped) return "stop_sequence";
    if (seq.generated.length >= seq.request.maxNewTokens || seq.numTokens >= this.options.maxTotalTokens) return "length";
    return null;
  }

  /** A scheduled sequence's adapter is pinned by it, so it is in a slot. */
  private slotOf(seq: Sequence): number {
    const slot = this.options.adapters.slotOf(seq.request.adapterId);
    if (slot === null) throw new Error(`sequence ${seq.id} was scheduled before its adapter ${JSON.stringify(seq.request.adapterId)} was in a slot`);
    return slot;
  }

  private end(seq: Sequence, reason: FinishReason, error?: unknown): void {
    if (seq.status !== "finished") {
      this.scheduler.finish(seq, reason);
      // A slot named by the step in flight must stay loaded until the step is over, whoever leaves meanwhile.
      if (this.stepping?.has(seq)) this.releasedDuringStep.push(seq.request.adapterId);
      else this.options.adapters.release(seq.request.adapterId);
    }
    this.outputs.get(seq)?.end(error);
    this.outputs.delete(seq);
    this.observers.delete(seq);
  }
}

/** Whether the engine needs the sequence's tokens to penalise logits. */
function penalises(sampling: SequenceRequest["sampling"]): boolean {
  return (sampling.repetitionPenalty ?? 1) !== 1 || (sampling.frequencyPenalty ?? 0) !== 0 || (sampling.presencePenalty ?? 0) !== 0;
}

function topTokens(result: SeqResult): TopToken[] {
  return Array.from(result.topIds, (id, i) => ({ id, logprob: result.topLogprobs[i] as number }));
}

// The continuous-batching loop: while any sequence has work, schedule → one engine step → append the drawn
// tokens → emit them. Requests join and leave between steps. The loop plans and starts step k+1 before it
// waits for step k (vLLM V1's async scheduling, SGLang's overlap scheduler): a sequence decoding in both runs
// in step k+1 the token step k draws for it, which the engine passes on without the JS thread (SeqStep
// .previousResult), so the GPU does not wait for streaming, telemetry or planning between steps. The price: a
// sequence that ends on a token (EOS, a stop sequence) has already been given one more step, whose result is
// dropped; one that ends by length is not, its last draw being known in advance.
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

/** The tokens of an entry that runs the previous step's draw: the engine only reads them, so one serves all. */
const NO_TOKENS = new Int32Array(0);

/** What the loop asks of the engine: its steps, and to know when the loop resumes from having nothing to run. */
export type LoopEngine = Pick<NativeEngine, "step" | "resumeFromIdle">;

type StepOutcome = { results: SeqResult[] } | { error: unknown };

/** A step the engine is running (or has queued), and what the loop must do once it is over. */
interface StepInFlight {
  chunks: ScheduledChunk[];
  /** Each sequence's entry in the step: what the next step names to run the token drawn there. */
  indexOf: ReadonlyMap<Sequence, number>;
  outcome: Promise<StepOutcome>;
  /** Adapters of sequences that ended while the step was in flight: released once it is over. */
  releases: string[];
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
  /** Steps started and not yet applied, oldest first (at most two). */
  private readonly inFlight: StepInFlight[] = [];
  /**
   * A step failed and the one after it, started before the failure was known, is still in flight: nothing new
   * starts until that one is over, so that no step names the entries of a step that cannot draw.
   */
  private recovering = false;
  private readonly admission: AdmissionLimits;

  constructor(
    /** Only steps: adapter loads are the registry's (shard/adapters/slot-tier.ts). */
    private readonly engine: LoopEngine,
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
    // No loop ran since the last step ended: the engine sat idle with nothing to run, which it must not count as
    // the gap before this run's first step, nor as waiting for the loop.
    this.engine.resumeFromIdle();
    try {
      for (;;) {
        // Step k+1 is planned and started while step k runs; the engine runs them in that order.
        if (this.inFlight.length === 0) this.recovering = false;
        const next = this.scheduler.hasWork() && !this.recovering ? this.startStep() : null;
        const oldest = this.inFlight[0];
        // Nothing in flight and nothing to start: everything left waits for its adapter, whose load wakes the loop.
        if (oldest === undefined) break;
        if (next !== null && this.inFlight.length === 1) continue;
        // From here to the next step's start nothing awaits: the consumers of the tokens applied (streaming,
        // telemetry) run as microtasks, after that step is on its way.
        this.finishStep(oldest, await oldest.outcome);
      }
    } catch (error) {
      // A bug in the loop itself: fail every request rather than leave its client waiting forever.
      for (const seq of [...this.outputs.keys()]) this.end(seq, "cancelled", error);
      // The engine still runs the steps in flight: what they name is released once each is over.
      for (const step of this.inFlight.splice(0)) {
        void step.outcome.then(() => step.releases.forEach((adapterId) => this.options.adapters.release(adapterId)));
      }
    } finally {
      this.loop = null;
    }
  }

  /** Plans the next step and starts it; null when nothing can run now. */
  private startStep(): StepInFlight | null {
    // Read before planning: the step before this one, still in flight, draws the tokens this one may name.
    const previous = this.inFlight.at(-1)?.indexOf ?? new Map<Sequence, number>();
    const chunks = this.scheduler.schedule();
    if (chunks.length === 0) return null;
    for (const chunk of chunks) this.observers.get(chunk.seq)?.scheduled(chunk, chunks.length);
    const steps = chunks.map((chunk) => this.stepFor(chunk, previous));
    const step: StepInFlight = {
      chunks,
      indexOf: new Map(chunks.map((chunk, i) => [chunk.seq, i])),
      // Settled into a value: a step refused at once must not count as an unhandled rejection while the loop is
      // still awaiting the step before it.
      outcome: this.engine.step(steps).then(
        (results) => ({ results }),
        (error: unknown) => ({ error }),
      ),
      releases: [],
    };
    this.inFlight.push(step);
    return step;
  }

  private finishStep(step: StepInFlight, outcome: StepOutcome): void {
    this.inFlight.shift();
    for (const adapterId of step.releases) this.options.adapters.release(adapterId);
    if (!("error" in outcome)) {
      step.chunks.forEach((chunk, i) => this.apply(chunk, outcome.results[i] as SeqResult));
    } else if (this.recovering) {
      // Started before the step ahead of it failed: it fails with it (naming entries that never drew), whatever it
      // held is computed again; the sequences of the failed step have ended already.
      for (const chunk of step.chunks) if (chunk.seq.status !== "finished") this.scheduler.recompute(chunk);
    } else {
      // The step's sequences cannot go on (their cache is in an unknown state); the others can, once the step
      // started after this one (which may name its entries) is over.
      for (const { seq } of step.chunks) this.end(seq, "cancelled", outcome.error);
      this.recovering = this.inFlight.length > 0;
    }
  }

  private stepFor(chunk: ScheduledChunk, previous: ReadonlyMap<Sequence, number>): SeqStep {
    const { seq, startPos, numTokens, sample } = chunk;
    const { request } = seq;
    // A decode token still being drawn is run by naming where the step in flight draws it.
    const awaited = startPos >= seq.knownTokens;
    const previousResult = awaited ? previous.get(seq) : undefined;
    if (awaited && previousResult === undefined) throw new Error(`sequence ${seq.id} awaits a token that no step in flight draws`);
    // Built for every sequence of every step on the JS thread: no spread, no new typed array where one will do.
    const step: SeqStep = {
      tokens: awaited ? NO_TOKENS : seq.tokens(startPos, numTokens),
      startPos,
      blockTable: seq.blockTableArray(),
      adapterSlot: this.slotOf(seq),
      sample,
      sampling: samplingAt(request.sampling, seq.generated.length + seq.awaitedTokens - (sample ? 1 : 0)),
      // The engine appends the awaited token to these itself.
      ...(sample && penalises(request.sampling) ? { penaltyTokens: seq.tokens(0, seq.knownTokens), penaltyPromptLength: seq.promptLength } : {}),
      topN: sample ? request.topN : 0,
      logprobTargets: this.promptTargets(seq, startPos, numTokens),
      returnLogits: false,
    };
    if (previousResult !== undefined) step.previousResult = previousResult;
    return step;
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
    if (seq.status === "finished") return; // cancelled, or ended by an earlier step's token, while the step ran
    this.scheduler.computed(chunk);
    if (seq.promptLogprobs && result.targetLogprobs.length > 0) {
      // A preempted sequence computes its prompt again; the numbers are the same, so writing twice is harmless.
      const n = Math.min(chunk.numTokens, seq.promptLength - 1 - chunk.startPos);
      for (let i = 0; i < n; i++) seq.promptLogprobs[chunk.startPos + i + 1] = result.targetLogprobs[i] as number;
    }
    if (!chunk.sample) return;
    const token: GeneratedToken = { id: result.token, logprob: result.logprob, top: topTokens(result) };
    // Kept even when the sequence was preempted since: it was drawn before its blocks were taken.
    seq.receive(token);
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
    if (seq.generated.length >= seq.request.maxNewTokens || seq.knownTokens >= this.options.maxTotalTokens) return "length";
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
      // A slot named by a step in flight must stay loaded until the last such step is over, whoever leaves meanwhile.
      const holder = [...this.inFlight].reverse().find((step) => step.indexOf.has(seq));
      if (holder) holder.releases.push(seq.request.adapterId);
      else this.options.adapters.release(seq.request.adapterId);
    }
    this.outputs.get(seq)?.end(error);
    this.outputs.delete(seq);
    this.observers.delete(seq);
  }
}

/**
 * A request's sampling parameters with the index of the draw: a literal of one shape (a spread costs far more),
 * which must name every parameter (`satisfies`), so none added later is dropped here.
 */
function samplingAt(sampling: SequenceRequest["sampling"], draw: number): SeqStep["sampling"] {
  const { temperature, topK, topP, seed, typicalP, repetitionPenalty, frequencyPenalty, presencePenalty } = sampling;
  return { temperature, topK, topP, seed, draw, typicalP, repetitionPenalty, frequencyPenalty, presencePenalty } satisfies Record<keyof SeqStep["sampling"], unknown>;
}

/** Whether the engine needs the sequence's tokens to penalise logits. */
function penalises(sampling: SequenceRequest["sampling"]): boolean {
  return (sampling.repetitionPenalty ?? 1) !== 1 || (sampling.frequencyPenalty ?? 0) !== 0 || (sampling.presencePenalty ?? 0) !== 0;
}

function topTokens(result: SeqResult): TopToken[] {
  return Array.from(result.topIds, (id, i) => ({ id, logprob: result.topLogprobs[i] as number }));
}

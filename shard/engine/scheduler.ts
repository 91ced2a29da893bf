// Decides who runs in the next step and how many tokens each contributes. Every running sequence gets its
// decode token; prompts (new ones, or the rest of a long one) share a per-step token budget, so a long prompt
// is computed in chunks across steps while the others keep decoding. When the KV cache runs out, the newest
// sequence is preempted: its blocks are freed and it is computed again later. A sequence admitted with the
// start of its tokens in the prefix cache (block-manager.ts) computes only what follows. Waiting sequences
// are admitted fairly across adapters (fair-queue.ts), FCFS within one. Never touches tensors: the engine loop
// turns the chunks into a step plan. A plan may be made while the step before it is still in flight: a
// sequence's positions count as cached once planned, and a token being drawn counts as one of its tokens.
import type { BlockManager } from "./block-manager.js";
import { FairQueue } from "./fair-queue.js";
import type { FinishReason, Sequence } from "./sequence.js";

/** One sequence's part of a step: tokens [startPos, startPos + numTokens) of its prompt and generated ids. */
export interface ScheduledChunk {
  seq: Sequence;
  startPos: number;
  numTokens: number;
  /** The chunk reaches the sequence's last token, so the logits of its last position give the next token. */
  sample: boolean;
  /** seq.preemptions when planned: a preemption since took the blocks the chunk computed into. */
  preemptionsBefore: number;
}

/** What the prefix cache saved since start: tokens admitted (looked up), and how many of them were found cached. */
export interface PrefixCacheCounts {
  queriedTokens: number;
  hitTokens: number;
}

export class Scheduler {
  /** Waiting sequences, admitted fairly across adapters (fair-queue.ts). */
  private readonly waiting = new FairQueue();
  /** In admission order: the last one is the newest, the first to be preempted. */
  private readonly running: Sequence[] = [];
  private readonly prefixCounts: PrefixCacheCounts = { queriedTokens: 0, hitTokens: 0 };

  constructor(
    readonly blocks: BlockManager,
    /** Most prompt tokens computed in one step (decode tokens are not counted). */
    readonly prefillBudget: number,
    /** Told of every preemption (metrics and traces count them). */
    private readonly onPreempt: (seq: Sequence) => void = () => undefined,
    /** Whether a waiting sequence can run now: its adapter may still be loading into a slot. */
    private readonly runnable: (seq: Sequence) => boolean = () => true,
  ) {
    if (!Number.isInteger(prefillBudget) || prefillBudget < 1) throw new Error(`prefillBudget must be a positive integer, got ${prefillBudget}`);
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  get numRunning(): number {
    return this.running.length;
  }

  get prefixCache(): Readonly<PrefixCacheCounts> {
    return this.prefixCounts;
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  add(seq: Sequence): void {
    // A sequence that cannot fit alone would wait forever; one that fits alone always gets to finish,
    // because preemption only ever takes from sequences newer than the one that needs room.
    const capacity = this.blocks.numBlocks * this.blocks.blockSize;
    if (seq.maxTokens > capacity) {
      throw new Error(`sequence needs up to ${seq.maxTokens} tokens of KV cache, the cache holds ${capacity}`);
    }
    seq.status = "waiting";
    this.waiting.push(seq);
  }

  schedule(): ScheduledChunk[] {
    const chunks: ScheduledChunk[] = [];
    let budget = this.prefillBudget;
    // Oldest first, so that preempting from the tail never takes a sequence already placed in this step.
    for (let i = 0; i < this.running.length; i++) {
      const seq = this.running[i] as Sequence;
      if (seq.allDrawn) continue; // its last token is still being drawn: it ends when that arrives
      const decoding = seq.pendingTokens === 1;
      const wanted = decoding ? 1 : Math.min(seq.pendingTokens, budget);
      if (wanted === 0) continue;
      const granted = this.makeRoom(seq, wanted, decoding);
      if (granted === 0) break; // seq preempted itself: it was the newest, nothing runs after it
      chunks.push(this.place(seq, granted));
      if (!decoding) budget -= granted;
    }
    // A preempted sequence whose token is still being drawn cannot recompute yet: that token is not known.
    const admissible = (seq: Sequence): boolean => seq.awaitedTokens === 0 && this.runnable(seq);
    for (let seq = this.waiting.peek(admissible); seq && budget > 0; seq = this.waiting.peek(admissible)) {
      // Admit only when the whole rest of the sequence fits in the free blocks now, so that a new prompt does
      // not start on blocks that the next chunks would have to win back by preemption.
      // Prompt logprobs come from computing every prompt position: such a sequence does not look.
      const looks = this.blocks.cachesPrefixes && seq.promptLogprobs === null;
      const prefix = looks ? this.blocks.cachedPrefix(seq) : [];
      if (this.blocks.blocksToAdmit(prefix, seq.numTokens) > this.blocks.freeCount) break;
      this.waiting.admit(seq);
      seq.status = "running";
      this.running.push(seq);
      this.blocks.share(seq.blockTable, prefix);
      seq.numCachedTokens = prefix.length * this.blocks.blockSize;
      if (looks) {
        this.prefixCounts.queriedTokens += seq.numTokens;
        this.prefixCounts.hitTokens += seq.numCachedTokens;
      }
      const granted = Math.min(seq.pendingTokens, budget);
      this.blocks.grow(seq.blockTable, seq.numCachedTokens + granted);
      chunks.push(this.place(seq, granted));
      budget -= granted;
    }
    for (const chunk of chunks) this.start(chunk);
    return chunks;
  }

  /** Ends a sequence (finished, or its client went away): its blocks are free for the next step (its full ones stay cached until needed). */
  finish(seq: Sequence, reason: FinishReason): void {
    if (seq.status === "finished") return;
    if (seq.status === "running") removeFrom(this.running, seq);
    else this.waiting.remove(seq);
    this.blocks.release(seq.blockTable);
    seq.status = "finished";
    seq.finishReason = reason;
  }

  /**
   * A step that held this chunk failed for the step before it (its token never came): the sequence gives up its
   * blocks and is computed again from the start, as if preempted, rather than failing with a step it had no part in.
   */
  recompute(chunk: ScheduledChunk): void {
    const { seq } = chunk;
    if (chunk.sample) seq.awaitedTokens--;
    if (seq.status === "running") this.preempt(seq);
  }

  /**
   * Records that the engine computed a chunk: its full blocks become findable by later prompts. Nothing when the
   * sequence was preempted since it was planned (its blocks are gone) or has ended.
   */
  computed(chunk: ScheduledChunk): void {
    const { seq } = chunk;
    if (seq.status === "finished" || seq.preemptions !== chunk.preemptionsBefore) return;
    this.blocks.cacheComputed(seq, chunk.startPos, chunk.startPos + chunk.numTokens);
  }

  /**
   * A planned chunk is in flight from now: its positions count as cached (steps run in order, so the next step's
   * attention sees them) and the token a sampling chunk draws is awaited.
   */
  private start(chunk: ScheduledChunk): void {
    chunk.seq.numCachedTokens = chunk.startPos + chunk.numTokens;
    if (chunk.sample) chunk.seq.awaitedTokens++;
  }

  /**
   * Finds blocks for `wanted` more tokens of `seq`: a prompt chunk shrinks to what is free, and only when
   * nothing is free are newer sequences preempted. Returns the tokens granted, 0 when `seq` itself was
   * preempted (it was the newest left).
   */
  private makeRoom(seq: Sequence, wanted: number, decoding: boolean): number {
    let granted = wanted;
    while (!this.blocks.canGrow(seq.blockTable, seq.numCachedTokens + granted)) {
      const fits = this.blocks.capacityWithFree(seq.blockTable) - seq.numCachedTokens;
      if (!decoding && fits > 0) {
        granted = fits;
        break;
      }
      const newest = this.running[this.running.length - 1] as Sequence;
      this.preempt(newest);
      if (newest === seq) return 0;
    }
    this.blocks.grow(seq.blockTable, seq.numCachedTokens + granted);
    return granted;
  }

  private preempt(seq: Sequence): void {
    removeFrom(this.running, seq);
    this.blocks.release(seq.blockTable);
    seq.numCachedTokens = 0;
    seq.preemptions++;
    seq.status = "waiting";
    // Back to the front of its adapter's queue: it was admitted before everything still waiting there.
    this.waiting.unshift(seq);
    this.onPreempt(seq);
  }

  private place(seq: Sequence, numTokens: number): ScheduledChunk {
    const startPos = seq.numCachedTokens;
    return { seq, startPos, numTokens, sample: startPos + numTokens === seq.numTokens, preemptionsBefore: seq.preemptions };
  }
}

function removeFrom(list: Sequence[], seq: Sequence): void {
  const at = list.indexOf(seq);
  if (at < 0) throw new Error(`sequence ${seq.id} is not ${seq.status}`);
  list.splice(at, 1);
}

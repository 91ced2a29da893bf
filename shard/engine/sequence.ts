// One request's state inside the shard: its tokens, where its KV cache lives and how far it has been
// computed. Plain data: the scheduler moves it between queues, the engine loop appends to it.
import type { SamplingParams } from "../../native/addon.js";

export type SequenceStatus = "waiting" | "running" | "finished";

/** Why a sequence stopped: its length limit, an end-of-sequence token, a stop sequence in its text, or its client went away. */
export type FinishReason = "length" | "eos_token" | "stop_sequence" | "cancelled";

/**
 * Follows a sequence's text (shard/engine/generate-stream.ts): the engine loop hands it every generated token,
 * in order, before it emits the token, and ends the sequence when the text now holds a stop sequence.
 */
export interface StopCheck {
  stopsAt(tokenId: number): boolean;
}

/** A validated request in token ids, as the engine loop takes it. */
export interface SequenceRequest {
  promptIds: Int32Array;
  /** The adapter's id, "" for the base model alone (its engine slot is looked up at each step). */
  adapterId: string;
  maxNewTokens: number;
  /** The draw index is the sequence's own counter, so it is not part of the request. */
  sampling: Omit<SamplingParams, "draw">;
  /** Alternatives to report with each generated token (0: none). */
  topN: number;
  /** Compute the logprob of every prompt token given the ones before it. */
  promptLogprobs: boolean;
  /** Ends the sequence at a stop sequence; absent: only EOS and the length limit end it. */
  stopCheck?: StopCheck;
  /** EOS tokens do not end the sequence (vLLM's ignore_eos): it runs to maxNewTokens or a stop sequence; absent: they do. */
  ignoreEos?: boolean;
}

export interface TopToken {
  id: number;
  logprob: number;
}

export interface GeneratedToken {
  id: number;
  logprob: number;
  top: TopToken[];
}

let nextSequenceId = 0;

export class Sequence {
  readonly id = nextSequenceId++;
  status: SequenceStatus = "waiting";
  finishReason: FinishReason | null = null;
  readonly generated: GeneratedToken[] = [];
  /** KV block ids holding positions [0, numCachedTokens), in order. */
  readonly blockTable: number[] = [];
  /**
   * Positions whose keys and values are in the cache: computed, found in the prefix cache when admitted, or being
   * computed by a step in flight (steps run in order, so the next one sees them). Reset to 0 when the sequence is
   * preempted.
   */
  numCachedTokens = 0;
  /**
   * Tokens that steps in flight draw for this sequence and the loop has not received yet: their positions count
   * in numTokens, and the next step runs such a token by naming the step that draws it (SeqStep.previousResult).
   */
  awaitedTokens = 0;
  /** Times it was preempted: a step planned before the last preemption computed into blocks it no longer holds. */
  preemptions = 0;
  /** blockTable as the engine takes it, made again only when the table changed (see blockTableArray). */
  private tableArray = new Int32Array(0);
  /**
   * Logprob of prompt token i given tokens [0, i), NaN at 0 (nothing predicts the first token); null when
   * not asked for. Filled chunk by chunk as the prompt is computed.
   */
  readonly promptLogprobs: Float32Array | null;

  constructor(
    readonly request: SequenceRequest,
    /** Which registration of the adapter computes it: KV blocks are shared only within one (prefix-hash.ts). */
    readonly adapterVersion = 0,
  ) {
    if (request.promptIds.length === 0) throw new Error("a sequence needs at least one prompt token");
    this.promptLogprobs = request.promptLogprobs ? new Float32Array(request.promptIds.length).fill(Number.NaN) : null;
  }

  get promptLength(): number {
    return this.request.promptIds.length;
  }

  /** Prompt and generated tokens so far, the awaited ones included. */
  get numTokens(): number {
    return this.knownTokens + this.awaitedTokens;
  }

  /** Prompt and generated tokens the loop has received. */
  get knownTokens(): number {
    return this.request.promptIds.length + this.generated.length;
  }

  /** Every token it may generate is received or awaited: nothing more to run, it ends when the last one arrives. */
  get allDrawn(): boolean {
    return this.generated.length + this.awaitedTokens >= this.request.maxNewTokens;
  }

  /** A token that a step drew for it arrives (in the order drawn). */
  receive(token: GeneratedToken): void {
    if (this.awaitedTokens === 0) throw new Error(`sequence ${this.id} received a token it was not awaiting`);
    this.awaitedTokens--;
    this.generated.push(token);
  }

  /** Tokens whose KV is not cached yet: the rest of the prompt, or the last generated token when decoding. */
  get pendingTokens(): number {
    return this.numTokens - this.numCachedTokens;
  }

  /** The most tokens this sequence can ever hold: what the scheduler must be able to fit in the cache. */
  get maxTokens(): number {
    return this.request.promptIds.length + this.request.maxNewTokens;
  }

  /**
   * The block table as an Int32Array: the same array while the table is unchanged, since a step takes every
   * sequence's table and a new typed array costs more than comparing a few dozen ids. Never written to.
   */
  blockTableArray(): Int32Array {
    const table = this.blockTable;
    let same = this.tableArray.length === table.length;
    for (let i = 0; same && i < table.length; i++) same = this.tableArray[i] === table[i];
    if (!same) this.tableArray = new Int32Array(table);
    return this.tableArray;
  }

  tokenAt(position: number): number {
    const { promptIds } = this.request;
    if (position < promptIds.length) return promptIds[position] as number;
    const token = this.generated[position - promptIds.length];
    if (token === undefined) throw new Error(`sequence ${this.id} has no token received at position ${position}`);
    return token.id;
  }

  /** Token ids of positions [start, start + count), prompt and generated alike (a preempted sequence recomputes both). */
  tokens(start: number, count: number): Int32Array {
    const out = new Int32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.tokenAt(start + i);
    return out;
  }
}

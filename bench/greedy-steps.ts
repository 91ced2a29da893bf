// The benches' sequences, stepped straight on a NativeEngine: each keeps its adapter slot, block table, position
// and the last token it drew; a step gives every sequence its tokens, greedily sampled, and records what it drew.
import type { NativeEngine, SeqStep } from "../native/addon.js";

export interface BenchSeq {
  slot: number;
  table: Int32Array;
  position: number;
  last: number;
}

function greedyStep(seq: BenchSeq, tokens: Int32Array): SeqStep {
  return {
    tokens,
    startPos: seq.position,
    blockTable: seq.table,
    adapterSlot: seq.slot,
    sample: true,
    sampling: { temperature: 0, topK: 0, topP: 1, seed: 0, draw: seq.position },
    topN: 0,
    logprobTargets: null,
    returnLogits: false,
  };
}

/** One engine step over `seqs`, each fed `tokens(seq)`. */
export async function stepGreedily(engine: NativeEngine, seqs: BenchSeq[], tokens: (seq: BenchSeq) => Int32Array): Promise<void> {
  const plan = seqs.map((seq) => greedyStep(seq, tokens(seq)));
  const results = await engine.step(plan);
  results.forEach((result, i) => {
    seqs[i]!.position += plan[i]!.tokens.length;
    seqs[i]!.last = result.token;
  });
}

// The engine's logits processors against their definitions, computed here from the raw logits the engine
// returns (returnLogits): repetition penalty (transformers: over prompt and generated ids, positive logits
// divided, negative multiplied), then frequency and presence penalties (OpenAI: generated ids only,
// logit -= frequency * count + presence), in greedy mode and when sampling, each sequence of one mixed batch
// with its own parameters; typical-p (transformers' TypicalLogitsWarper) keeps exactly its set; the reported
// logprob stays the raw log-softmax. Where the CUDA engine runs (test/helpers/cuda.ts) every case runs on it
// too, against the raw logits it returns itself.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SamplingParams, SeqResult, SeqStep } from "../native/addon.js";
import { cudaAvailable } from "./helpers/cuda.js";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { BASE, logSoftmax, openHarness, runStep, TestSequence, type Harness } from "./helpers/engine-harness.js";
import { rowOf } from "./helpers/refs.js";

const devices = cudaAvailable() ? (["cpu", "cuda"] as const) : (["cpu"] as const);
const sets = fixtureSets().flatMap((set) => devices.map((device) => ({ ...set, device })));

interface Penalised {
  sampling: Pick<SamplingParams, "repetitionPenalty" | "frequencyPenalty" | "presencePenalty">;
  tokens: number[];
  promptLength: number;
}

/** The penalties by their definitions, in float32 like the logits they change. */
function penalise(row: Float32Array, { sampling, tokens, promptLength }: Penalised): Float32Array {
  const out = Float32Array.from(row);
  const repetition = Math.fround(sampling.repetitionPenalty ?? 1);
  for (const id of new Set(tokens)) out[id] = out[id]! > 0 ? out[id]! / repetition : out[id]! * repetition;
  const counts = new Map<number, number>();
  for (const id of tokens.slice(promptLength)) counts.set(id, (counts.get(id) ?? 0) + 1);
  for (const [id, count] of counts) {
    out[id] = out[id]! - Math.fround((sampling.frequencyPenalty ?? 0) * count + (sampling.presencePenalty ?? 0));
  }
  return out;
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** Ids by logit, highest first, lowest id among equals. */
function byLogit(row: Float32Array): number[] {
  return [...row.keys()].sort((a, b) => row[b]! - row[a]! || a - b);
}

/** transformers' TypicalLogitsWarper after an optional top-k cut, at a temperature: the ids it keeps. */
function typicalSet(row: Float32Array, temperature: number, topK: number, mass: number): Set<number> {
  const candidates = topK > 0 ? byLogit(row).slice(0, topK) : [...row.keys()];
  const scaled = Float32Array.from(candidates, (id) => row[id]! / temperature);
  const logProbs = logSoftmax(scaled);
  let entropy = 0;
  for (const lp of logProbs) entropy -= Math.exp(lp) * lp;
  const distance = Array.from(logProbs, (lp) => Math.abs(-lp - entropy));
  const order = [...distance.keys()].sort((a, b) => distance[a]! - distance[b]!);
  let cumulative = 0;
  let last = 0;
  for (const i of order) {
    cumulative += Math.exp(logProbs[i]!);
    if (cumulative < mass) last++;
  }
  const threshold = distance[order[Math.min(last, order.length - 1)]!]!;
  return new Set(candidates.filter((_, i) => distance[i]! <= threshold));
}

describe("engine logits processors", () => {
  describe.each(sets)("$name on $device", (set) => {
    let h: Harness;
    let raw: Float32Array;
    const promptIndex = () => set.refs.prompts.reduce((best, p, i) => (p.ids.length < set.refs.prompts[best]!.ids.length ? i : best), 0);

    /** One step: every entry is a sequence of the same prompt with its own step fields; their results. */
    async function stepMany(entries: Partial<SeqStep>[]): Promise<SeqResult[]> {
      const ids = set.refs.prompts[promptIndex()]!.ids;
      const work = entries.map((options): [TestSequence, SeqStep] => {
        const seq = new TestSequence(h, h.slots.get(BASE)!);
        return [seq, seq.step(ids, { sample: true, ...options })];
      });
      const results = await runStep(h.engine, work);
      for (const [seq] of work) seq.release();
      return results;
    }

    beforeAll(async () => {
      h = await openHarness(set, { device: set.device });
      const [result] = await stepMany([{ returnLogits: true }]);
      const vocab = h.spec.vocabSize;
      raw = Float32Array.from(rowOf(result!.logits, vocab, result!.logits.length / vocab - 1));
    });
    afterAll(() => h.engine.close());

    it("penalties change the drawn token as their definitions say, per sequence of one batch, greedy and sampled", async () => {
      const [t1, t2] = byLogit(raw) as [number, number];
      const lowest = byLogit(raw).at(-1)!;
      const [l1, l2, ln] = [raw[t1]!, raw[t2]!, raw[lowest]!];
      expect(l2, "the cases below assume two positive top logits and a negative lowest one").toBeGreaterThan(0);
      expect(ln).toBeLessThan(0);
      const margin = l1 - l2;
      const cases: (Penalised & { name: string; expected: number })[] = [
        // Counted on the prompt too: t1 drops below t2. (Counting generated ids only would keep t1.)
        { name: "repetition on a prompt id", sampling: { repetitionPenalty: (l1 / l2) * 1.05 }, tokens: [t1], promptLength: 1, expected: t2 },
        // Prompt ids are not counted: t1 stays. (Counting them would take 6 from it, far beyond the margin.)
        { name: "frequency skips the prompt", sampling: { frequencyPenalty: 2 }, tokens: [t1, t1, t1], promptLength: 3, expected: t1 },
        // Twice generated: 1.2 margins off. (Once would keep t1.)
        { name: "frequency times the count", sampling: { frequencyPenalty: 0.6 * margin }, tokens: [t1, t1], promptLength: 0, expected: t2 },
        // Presence counts once: 0.6 margins off, t1 stays. (Times the count would drop it.)
        { name: "presence once", sampling: { presencePenalty: 0.6 * margin }, tokens: [t1, t1, t1], promptLength: 0, expected: t1 },
        { name: "presence", sampling: { presencePenalty: 1.2 * margin }, tokens: [t2, t1], promptLength: 1, expected: t2 },
        // A negative logit is multiplied by the penalty: 0.5 lifts it towards 0 (dividing would push it down),
        // and the (negative) presence penalty applied after lifts it past t1.
        { name: "repetition < 1 on a negative logit", sampling: { repetitionPenalty: 0.5, presencePenalty: -(l1 - 0.75 * ln) }, tokens: [lowest], promptLength: 0, expected: lowest },
        { name: "repetition > 1 on a negative logit", sampling: { repetitionPenalty: 2, presencePenalty: -(l1 - 1.5 * ln) }, tokens: [lowest], promptLength: 0, expected: t1 },
        // Repetition first: 2*l1 - f stays above l2; frequency first, (l1 - f) / 0.5 would fall below it.
        { name: "repetition before frequency", sampling: { repetitionPenalty: 0.5, frequencyPenalty: 0.75 * (2 * l1 - l2) }, tokens: [t1], promptLength: 0, expected: t1 },
        { name: "tokens without penalties", sampling: {}, tokens: [t1, t1], promptLength: 0, expected: t1 },
      ];
      const modes: Partial<SamplingParams>[] = [{ temperature: 0 }, { temperature: 1e-4, seed: 7 }];
      const entries = modes.flatMap((mode) =>
        cases.map(
          (c, i): Partial<SeqStep> => ({
            sampling: { temperature: 0, topK: 0, topP: 1, seed: 0, draw: i, ...mode, ...c.sampling },
            penaltyTokens: Int32Array.from(c.tokens),
            penaltyPromptLength: c.promptLength,
            returnLogits: true,
          }),
        ),
      );
      const results = await stepMany(entries);
      const vocab = h.spec.vocabSize;
      results.forEach((result, k) => {
        // The row's own raw logits: on the GPU a batch of 18 rounds its products apart from the batch of 1 that
        // gave `raw` (about 1e-4 relative), which the logprob must not be compared across.
        const rawLogprobs = logSoftmax(rowOf(result.logits, vocab, result.logits.length / vocab - 1));
        const c = cases[k % cases.length]!;
        const penalised = penalise(raw, c);
        const sorted = byLogit(penalised);
        const what = `${c.name} (${k < cases.length ? "greedy" : "sampled"})`;
        expect(penalised[sorted[0]!]! - penalised[sorted[1]!]!, `${what}: the case must not be a near tie`).toBeGreaterThan(1e-2);
        expect(argmax(penalised), `${what}: reference`).toBe(c.expected);
        expect(result.token, what).toBe(c.expected);
        expect(Math.abs(result.logprob - rawLogprobs[result.token]!), `${what}: logprob is the raw one`).toBeLessThan(1e-5);
      });
    });

    it("typical-p draws only from transformers' typical set, which leaves out the most likely token here", async () => {
      const t1 = byLogit(raw)[0]!;
      for (const { temperature, topK, typicalP } of [
        { temperature: 1, topK: 0, typicalP: 0.2 },
        { temperature: 0.8, topK: 60, typicalP: 0.5 },
      ]) {
        const results = await stepMany(Array.from({ length: 200 }, (_, i) => ({ sampling: { temperature, topK, topP: 1, typicalP, seed: 31, draw: i } })));
        const drawn = new Set(results.map((r) => r.token));
        // Slack on the mass keeps a token right at the boundary (rounding) from failing the test.
        const kept = typicalSet(raw, temperature, topK, typicalP + 1e-3);
        const what = `T ${temperature}, top-k ${topK}, typical ${typicalP}`;
        for (const id of drawn) expect(kept.has(id), `${what}: token ${id} is outside the typical set`).toBe(true);
        expect(typicalSet(raw, temperature, topK, typicalP).has(t1), `${what}: the reference set keeps the top token`).toBe(false);
        expect(drawn.size, `${what}: the set is sampled, not one token`).toBeGreaterThan(3);
        expect(kept.size, `${what}: the cut removes most tokens`).toBeLessThan((topK || raw.length) / 2);
      }
    });
  });
});

// The reference's greedy answer as a server returns it: the greedy ids cut after the first EOS (where
// generation stops; the reference runs on past it), and the reference logprob of a token at a step.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { logSoftmax } from "./engine-harness.js";
import type { SequenceRequest } from "../../shard/engine/sequence.js";
import type { FixtureSet } from "./fixture-sets.js";
import { rowOf, type LogitRows } from "./refs.js";

/** EOS ids as the model's own files declare them (config.json and generation_config.json). */
export function eosIds(modelDir: string): Set<number> {
  const ids = new Set<number>();
  for (const file of ["config.json", "generation_config.json"]) {
    try {
      const eos = (JSON.parse(readFileSync(join(modelDir, file), "utf8")) as { eos_token_id?: number | number[] }).eos_token_id;
      for (const id of [eos ?? []].flat()) ids.add(id);
    } catch {
      // generation_config.json is optional.
    }
  }
  return ids;
}

export function greedyIds(set: FixtureSet, variant: string, prompt: number): number[] {
  const eos = eosIds(set.modelDir);
  const ids = set.refs.variants[variant]!.find((v) => v.prompt === prompt)!.greedy_ids;
  const eosAt = ids.findIndex((id) => eos.has(id));
  return eosAt < 0 ? ids : ids.slice(0, eosAt + 1);
}

/** The engine loop's request for the reference's greedy run of a variant ("base" = no adapter) on a fixture prompt. */
export function greedyRequest(set: FixtureSet, variant: string, promptIndex: number, extra: Partial<SequenceRequest> = {}): SequenceRequest {
  return {
    promptIds: Int32Array.from(set.refs.prompts[promptIndex]!.ids),
    adapterId: variant === "base" ? "" : variant,
    maxNewTokens: set.refs.steps,
    sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
    topN: 0,
    promptLogprobs: false,
    ...extra,
  };
}

export function logprobAt(logits: LogitRows, row: number, id: number): number {
  return logSoftmax(rowOf(logits.data, logits.vocab, row))[id]!;
}

/** POST /generate for the reference's greedy run of a variant ("base" = no adapter), with every detail. */
export function postGreedyGenerate(url: string, set: FixtureSet, variant: string, text: string): Promise<Response> {
  return fetch(`${url}/generate`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      inputs: text,
      parameters: {
        ...(variant !== "base" && { adapter_id: variant }),
        max_new_tokens: set.refs.steps,
        do_sample: false,
        details: true,
        decoder_input_details: true,
      },
    }),
  });
}

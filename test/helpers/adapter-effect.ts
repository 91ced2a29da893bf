// Guards for adapter tests: an adapter whose reference equals the base's on the prompt a test uses proves
// nothing (the server could ignore the adapter and still pass). Each adapter test calls one of these for every
// adapter case it checks, so the comparison it makes can only pass if the adapter is really applied.
import { expect } from "vitest";
import { BASE } from "./engine-harness.js";
import type { FixtureSet } from "./fixture-sets.js";
import { greedyIds } from "./greedy-reference.js";
import type { LogitRows, RefLogits } from "./refs.js";

/**
 * The reference's logits for this prompt with the adapter (its prompt rows and its greedy steps) differ from the
 * base's by more than `rel` * max |base| in some row: more than the test itself accepts as equal, so a test at
 * that tolerance fails if the adapter is dropped. The steps count too: a one-token prompt cannot show an adapter
 * on q/k alone in its own row (attention over one position is its value), but the continuation does.
 */
export function expectAdapterChangesLogits(ref: RefLogits, variant: string, prompt: number, rel: number): void {
  if (variant === BASE) return;
  const worst = Math.max(
    worstRowChange(ref.prompt(variant, prompt), ref.prompt(BASE, prompt)),
    worstRowChange(ref.steps(variant, prompt), ref.steps(BASE, prompt)),
  );
  expect(worst, `${variant}/${prompt}: the adapter's reference logits must differ from the base's beyond the tolerance ${rel}`).toBeGreaterThan(rel);
}

/** The largest max |adapted - base| / max |base| over the rows both have. */
function worstRowChange(adapted: LogitRows, base: LogitRows): number {
  let worst = 0;
  for (let row = 0; row < Math.min(adapted.rows, base.rows); row++) {
    let maxDiff = 0;
    let maxRef = 0;
    for (let i = row * base.vocab; i < (row + 1) * base.vocab; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(adapted.data[i]! - base.data[i]!));
      maxRef = Math.max(maxRef, Math.abs(base.data[i]!));
    }
    worst = Math.max(worst, maxDiff / maxRef);
  }
  return worst;
}

/** The reference's greedy answer with the adapter differs from the base's within the first `tokens` tokens. */
export function expectAdapterChangesGreedy(set: FixtureSet, variant: string, prompt: number, tokens = set.refs.steps): void {
  if (variant === BASE) return;
  const adapted = greedyIds(set, variant, prompt).slice(0, tokens);
  const base = greedyIds(set, BASE, prompt).slice(0, tokens);
  expect(adapted, `${set.name} ${variant}/${prompt}: the adapter's greedy reference must differ from the base's in the first ${tokens} tokens`).not.toEqual(base);
}

// The bound on the `adapter` metrics label: the busiest adapters keep their own label, the rest are `other`,
// the base model is `base`, and a newcomer displaces the quietest labelled adapter only with more than twice
// its requests (the displaced one's series are dropped through onDemote).
import { describe, expect, it } from "vitest";
import { AdapterLabels } from "../telemetry/adapter-labels.js";

function countTimes(labels: AdapterLabels, id: string, times: number): string {
  let label = "";
  for (let i = 0; i < times; i++) label = labels.count(id);
  return label;
}

describe("AdapterLabels", () => {
  it("labels the first adapters while there is room, then reports the rest as other", () => {
    const labels = new AdapterLabels(2);
    expect(labels.count("a")).toBe("a");
    expect(labels.count("b")).toBe("b");
    expect(labels.count("c")).toBe("other");
    expect(labels.count("")).toBe("base");
    expect([labels.labelOf("a"), labels.labelOf("b"), labels.labelOf("c"), labels.labelOf("")]).toEqual(["a", "b", "other", "base"]);
  });

  it("gives a label to an adapter with more than twice the quietest labelled adapter's requests", () => {
    const demoted: string[] = [];
    const labels = new AdapterLabels(2, (id) => demoted.push(id));
    countTimes(labels, "a", 5);
    countTimes(labels, "b", 2);
    // c needs more than 2 × 2 requests to take b's place.
    expect(countTimes(labels, "c", 4)).toBe("other");
    expect(demoted).toEqual([]);
    expect(labels.count("c")).toBe("c");
    expect(demoted).toEqual(["b"]);
    expect(labels.labelOf("b")).toBe("other");
    expect(labels.labelOf("a")).toBe("a");
  });

  it("admits a held adapter (a load) into free room without counting it", () => {
    const labels = new AdapterLabels(1);
    expect(labels.admit("a")).toBe("a");
    expect(labels.admit("b")).toBe("other");
    // a has no requests counted: one request for b displaces it.
    expect(labels.count("b")).toBe("b");
    expect(labels.labelOf("a")).toBe("other");
  });

  it("labels nothing but base with a bound of 0", () => {
    const labels = new AdapterLabels(0);
    expect(countTimes(labels, "a", 10)).toBe("other");
    expect(labels.count("")).toBe("base");
  });
});

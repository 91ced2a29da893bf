// Stop sequences on streamed pieces: a stop split over pieces still stops, the text is cut at its start (with
// the rest of the piece that completed it), and text that might start a stop is held back, never emitted and
// then cut.
import { describe, expect, it } from "vitest";
import { StopSequenceMatcher } from "../shard/text/stop-sequences.js";

/** Feeds the pieces; the emitted text after each, whether it stopped, and the flushed rest when it did not. */
function run(stops: string[], pieces: string[]) {
  const matcher = new StopSequenceMatcher(stops);
  const emitted: string[] = [];
  let stoppedAt = -1;
  pieces.forEach((piece, i) => {
    const match = matcher.push(piece);
    emitted.push(match.text);
    if (match.stopped && stoppedAt < 0) stoppedAt = i;
  });
  const rest = stoppedAt < 0 ? matcher.flush() : "";
  return { emitted, stoppedAt, text: emitted.join("") + rest };
}

describe("StopSequenceMatcher", () => {
  it("stops on a stop sequence split over two pieces and cuts it", () => {
    const { emitted, stoppedAt, text } = run(["END"], ["Hello E", "ND world"]);
    expect(stoppedAt).toBe(1);
    expect(text).toBe("Hello ");
    // "E" could start the stop: it is held back, not emitted and then taken back.
    expect(emitted).toEqual(["Hello ", ""]);
  });

  it("stops on a stop spread over many pieces, and drops what follows it in the same piece", () => {
    const { emitted, stoppedAt, text } = run(["###"], ["a#", "#", "#b c", "d"]);
    expect(stoppedAt).toBe(2);
    expect(text).toBe("a");
    expect(emitted).toEqual(["a", "", "", ""]);
  });

  it("emits held text once it can no longer start a stop", () => {
    const { emitted, stoppedAt, text } = run(["END"], ["the E", "NTRY", " EN", "D"]);
    expect(emitted).toEqual(["the ", "ENTRY", " ", ""]);
    expect(stoppedAt).toBe(3);
    expect(text).toBe("the ENTRY ");
  });

  it("cuts at the earliest stop when several match in one piece", () => {
    expect(run(["cd", "b"], ["abcd"]).text).toBe("a");
    expect(run(["b", "abc"], ["xab", "c"]).text).toBe("xa");
  });

  it("holds back the longest end that starts any stop, and flushes it when the text ends without a stop", () => {
    const { emitted, stoppedAt, text } = run(["xyz", "yzw"], ["abxy"]);
    expect(emitted).toEqual(["ab"]);
    expect(stoppedAt).toBe(-1);
    expect(text).toBe("abxy");
  });

  it("keeps characters outside the BMP whole", () => {
    const { emitted, text } = run(["🙂!"], ["ok 🙂", "?"]);
    expect(emitted).toEqual(["ok ", "🙂?"]);
    expect(text).toBe("ok 🙂?");
    expect(run(["🙂!"], ["ok 🙂", "!", "more"]).text).toBe("ok ");
  });

  it("passes text through untouched without stops, and gives nothing after a stop", () => {
    expect(run([], ["a", "b"]).emitted).toEqual(["a", "b"]);
    const matcher = new StopSequenceMatcher(["x"]);
    expect(matcher.push("axb")).toEqual({ text: "a", stopped: true });
    expect(matcher.push("more")).toEqual({ text: "", stopped: true });
    expect(() => new StopSequenceMatcher([""])).toThrow(/must not be empty/);
  });
});

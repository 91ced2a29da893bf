// The shard's record of cancellable Generate calls (shard/cancellations.ts): Cancel aborts a running call by its
// id, a Cancel that overtakes its call cancels the call as it arrives, and a call without an id is never aborted.
import { describe, expect, it } from "vitest";
import { CALL_ID_HEADER } from "../common/call-id.js";
import { Cancellations } from "../shard/cancellations.js";

const headersFor = (id: string): Headers => new Headers({ [CALL_ID_HEADER]: id });

describe("Cancellations", () => {
  it("aborts a running call by its id, and only that one", () => {
    const cancellations = new Cancellations();
    const a = cancellations.register(headersFor("a"));
    const b = cancellations.register(headersFor("b"));
    expect(cancellations.cancel(["a"])).toBe(1);
    expect([a.signal.aborted, b.signal.aborted]).toEqual([true, false]);
    // Cancelled once: a second Cancel finds nothing running.
    expect(cancellations.cancel(["a"])).toBe(0);
  });

  it("cancels a call whose Cancel came first, as the call registers", () => {
    const cancellations = new Cancellations();
    expect(cancellations.cancel(["early"])).toBe(0);
    expect(cancellations.register(headersFor("early")).signal.aborted).toBe(true);
    // The early cancel is used up: a later call that reuses the id runs.
    expect(cancellations.register(headersFor("early")).signal.aborted).toBe(false);
  });

  it("forgets a call once it ended, so that a late Cancel does not count it", () => {
    const cancellations = new Cancellations();
    const call = cancellations.register(headersFor("done"));
    call.done();
    expect(cancellations.cancel(["done"])).toBe(0);
    expect(call.signal.aborted).toBe(false);
  });

  it("never aborts a call that carries no id", () => {
    const cancellations = new Cancellations();
    const call = cancellations.register(new Headers());
    expect(cancellations.cancel([""])).toBe(0);
    expect(call.signal.aborted).toBe(false);
  });
});

// The router's routing policy (router/affinity.ts) and its failover (router/failover.ts), on given views and
// scripted upstream streams: residency beats the hash, bounded load spreads a hot adapter, two routers with the
// same view agree, unhealthy groups come last; a group failing before the first token is skipped, one failing
// after it ends the stream with an error that says so, and a shard's refusal is never retried; Tokenize's unary
// call moves on the same way.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { GenerateStreamResponseSchema, type GenerateStreamResponse } from "../gen/loraserve/v1/generate_pb.js";
import { loadBound, rankGroups, type GroupView } from "../router/affinity.js";
import {
  callWithFailover,
  streamWithFailover,
  type Attempt,
  type AttemptOutcome,
  type FailoverObserver,
  type UnaryAttempt,
} from "../router/failover.js";

const URIS = ["http://10.0.0.1:1", "http://10.0.0.2:1", "http://10.0.0.3:1", "http://10.0.0.4:1"];

function views(overrides: Record<number, Partial<GroupView>> = {}): GroupView[] {
  return URIS.map((id, i) => ({ id, healthy: true, residency: "none", load: 0, ...overrides[i] }));
}

const ids = (groups: GroupView[]): string[] => groups.map((group) => group.id);

describe("rankGroups", () => {
  it("prefers the group holding the adapter in a slot, then in host memory, over the hash's choice", () => {
    const hashFirst = rankGroups("sql", views()).candidates[0]!.id;
    const other = URIS.findIndex((uri) => uri !== hashFirst);
    const third = URIS.findIndex((uri, i) => uri !== hashFirst && i !== other);
    const device = rankGroups("sql", views({ [other]: { residency: "device" }, [third]: { residency: "host" } }));
    expect(device.candidates.slice(0, 2).map((group) => group.id)).toEqual([URIS[other], URIS[third]]);
    expect(device.reason).toBe("resident_device");
    const host = rankGroups("sql", views({ [third]: { residency: "host" } }));
    expect(host.candidates[0]!.id).toBe(URIS[third]);
    expect(host.reason).toBe("resident_host");
    expect(rankGroups("sql", views()).reason).toBe("hash");
  });

  it("spreads a hot adapter: a group beyond c × the mean load is passed over, and comes back once others catch up", () => {
    // The arithmetic of the bound: ceil(1.25 × mean), but always above the mean.
    expect(loadBound([8, 0, 0, 0])).toBe(3);
    expect(loadBound([0, 0, 0, 0])).toBe(1);
    expect(loadBound([10, 10, 10, 10])).toBe(13);
    const resident = 0;
    const hot = rankGroups("sql", views({ [resident]: { residency: "device", load: 8 } }));
    expect(hot.candidates[0]!.id).not.toBe(URIS[resident]);
    expect(hot.reason).toBe("overflow");
    // Passed over, not dropped: it stays a failover candidate, after the groups within the bound.
    expect(hot.candidates[3]!.id).toBe(URIS[resident]);
    // Simulate a burst of one adapter's requests, each adding one to its group's load: all go to the resident
    // group while it is within the bound, then others take their share (no group ends beyond the bound by more
    // than the one request that found it within).
    const loads = [0, 0, 0, 0];
    for (let n = 0; n < 40; n += 1) {
      const first = rankGroups("sql", views(Object.fromEntries(loads.map((load, i) => [i, { load, residency: i === resident ? "device" : "none" }])))).candidates[0]!;
      loads[URIS.indexOf(first.id)]! += 1;
    }
    expect(Math.max(...loads)).toBeLessThanOrEqual(Math.ceil(1.25 * 10) + 1);
    expect(loads.filter((load) => load > 0).length).toBeGreaterThanOrEqual(3);
    expect(loads[resident]).toBe(Math.max(...loads));
  });

  it("is deterministic: the same view gives the same order, whatever order the groups are listed in", () => {
    const view = views({ 1: { load: 3 }, 2: { residency: "host", load: 1 } });
    for (const adapter of ["sql", "tone", "wide", "", "adapter-42"]) {
      const a = rankGroups(adapter, view);
      const b = rankGroups(adapter, [...view].reverse());
      expect(ids(b.candidates)).toEqual(ids(a.candidates));
      expect(b.reason).toBe(a.reason);
    }
    // Different adapters do not all land on one group.
    const firsts = new Set(Array.from({ length: 40 }, (_, i) => rankGroups(`adapter-${i}`, views()).candidates[0]!.id));
    expect(firsts.size).toBe(URIS.length);
  });

  it("puts unhealthy groups last, even one holding the adapter, and says when none is healthy", () => {
    const ranking = rankGroups("sql", views({ 0: { healthy: false, residency: "device" }, 1: { healthy: false } }));
    expect(ids(ranking.candidates.slice(2)).sort()).toEqual([URIS[0], URIS[1]].sort());
    expect(ranking.candidates[0]!.healthy).toBe(true);
    expect(ranking.reason).toBe("hash");
    const down = rankGroups("sql", views(Object.fromEntries(URIS.map((_, i) => [i, { healthy: false }]))));
    expect(down.candidates).toHaveLength(URIS.length);
    expect(down.reason).toBe("no_healthy_group");
    expect(rankGroups("sql", views().slice(0, 1)).reason).toBe("only_group");
  });
});

const token = (text: string): GenerateStreamResponse => create(GenerateStreamResponseSchema, { text });

/** An upstream that yields `texts`, then fails with `error` if given. */
function attempt(group: string, texts: string[], error?: ConnectError): Attempt & { opened: number } {
  const result = {
    group,
    opened: 0,
    open: async function* () {
      result.opened += 1;
      for (const text of texts) yield token(text);
      if (error) throw error;
    },
  };
  return result;
}

/** An observer that lists the groups reported as failed (the ones the router marks down). */
function failedGroups(failed: string[]): FailoverObserver {
  return { attempt: (group, outcome) => (outcome.kind !== "ok" && outcome.groupFailed ? failed.push(group) : undefined) };
}

const UNHEARD: FailoverObserver = { attempt: () => undefined };

/** An observer that lists every report as `group kind code`. */
function reports(heard: string[]): FailoverObserver {
  const codeOf = (outcome: AttemptOutcome): string => (outcome.kind === "ok" ? "" : ` ${Code[outcome.error.code]}`);
  return { attempt: (group, outcome) => heard.push(`${group} ${outcome.kind}${codeOf(outcome)}`) };
}

async function drain(stream: AsyncIterable<GenerateStreamResponse>): Promise<{ texts: string[]; error?: ConnectError }> {
  const texts: string[] = [];
  try {
    for await (const message of stream) texts.push(message.text);
    return { texts };
  } catch (error) {
    return { texts, error: ConnectError.from(error) };
  }
}

describe("streamWithFailover", () => {
  it("moves to the next group while groups fail before the first token, and reports each failed group", async () => {
    const failed: string[] = [];
    const refused = attempt("a", [], new ConnectError("connect ECONNREFUSED", Code.Unavailable));
    const reset = attempt("b", [], new ConnectError("socket hang up", Code.Aborted));
    const good = attempt("c", ["x", "y"]);
    const spare = attempt("d", ["z"]);
    expect(await drain(streamWithFailover([refused, reset, good, spare], undefined, failedGroups(failed)))).toEqual({ texts: ["x", "y"] });
    expect(failed).toEqual(["a", "b"]);
    expect(spare.opened).toBe(0);
  });

  it("moves on when a shard going down resets the stream (CANCELED), but not when the client cancelled", async () => {
    const failed: string[] = [];
    const reset = (): ReturnType<typeof attempt> => attempt("a", [], new ConnectError("http/2 stream closed with error code CANCEL (0x8)", Code.Canceled));
    expect(await drain(streamWithFailover([reset(), attempt("b", ["z"])], undefined, failedGroups(failed)))).toEqual({ texts: ["z"] });
    expect(failed).toEqual(["a"]);
    const cancelled = new AbortController();
    cancelled.abort();
    const spare = attempt("b", ["z"]);
    const { error } = await drain(streamWithFailover([reset(), spare], cancelled.signal, UNHEARD));
    expect(error?.code).toBe(Code.Canceled);
    expect(spare.opened).toBe(0);
  });

  it("moves on when the group's HTTP/2 session was lost (its GOAWAY, a session error) or it refused the stream unprocessed", async () => {
    const nodeError = (code: string, message: string): Error => Object.assign(new Error(message), { code });
    const lost = (cause: Error): ReturnType<typeof attempt> =>
      attempt("a", [], new ConnectError(cause.message, Code.Internal, undefined, undefined, cause));
    for (const cause of [
      nodeError("ERR_HTTP2_SESSION_ERROR", "Session closed with error code 2"),
      nodeError("ERR_HTTP2_GOAWAY_SESSION", "New streams cannot be created after receiving a GOAWAY"),
      nodeError("ERR_HTTP2_STREAM_ERROR", "Stream closed with error code NGHTTP2_REFUSED_STREAM"),
    ]) {
      const failed: string[] = [];
      expect(await drain(streamWithFailover([lost(cause), attempt("b", ["z"])], undefined, failedGroups(failed)))).toEqual({ texts: ["z"] });
      expect(failed).toEqual(["a"]);
    }
    // Any other stream error is the shard's answer: not retried.
    const spare = attempt("b", ["z"]);
    const other = lost(nodeError("ERR_HTTP2_STREAM_ERROR", "Stream closed with error code NGHTTP2_INTERNAL_ERROR"));
    expect((await drain(streamWithFailover([other, spare], undefined, UNHEARD))).error?.code).toBe(Code.Internal);
    expect(spare.opened).toBe(0);
  });

  it("ends with an error naming the group when it fails after the first token, without trying another", async () => {
    const failed: string[] = [];
    const spare = attempt("b", ["z"]);
    const { texts, error } = await drain(
      streamWithFailover([attempt("a", ["x"], new ConnectError("stream reset", Code.Unavailable)), spare], undefined, failedGroups(failed)),
    );
    expect(texts).toEqual(["x"]);
    expect(error?.code).toBe(Code.Unavailable);
    expect(error?.rawMessage).toMatch(/shard group a failed after the stream began.*cannot move to another group: stream reset/);
    expect(spare.opened).toBe(0);
    expect(failed).toEqual(["a"]);
  });

  it("never retries a shard's refusal or a client's cancellation", async () => {
    for (const code of [Code.InvalidArgument, Code.NotFound, Code.Internal]) {
      const spare = attempt("b", ["z"]);
      const { error } = await drain(streamWithFailover([attempt("a", [], new ConnectError("no", code)), spare], undefined, UNHEARD));
      expect(error?.code).toBe(code);
      expect(spare.opened).toBe(0);
    }
    const cancelled = new AbortController();
    cancelled.abort();
    const spare = attempt("b", ["z"]);
    const { error } = await drain(streamWithFailover([attempt("a", [], new ConnectError("reset", Code.Aborted)), spare], cancelled.signal, UNHEARD));
    expect(error?.code).toBe(Code.Aborted);
    expect(spare.opened).toBe(0);
  });

  it("fails with the last group's failure when every group fails", async () => {
    const { error } = await drain(
      streamWithFailover(
        [attempt("a", [], new ConnectError("first", Code.Unavailable)), attempt("b", [], new ConnectError("last", Code.Unavailable))],
        undefined,
        UNHEARD,
      ),
    );
    expect(error?.rawMessage).toBe("last");
  });
});

describe("the failover loop's reports", () => {
  it("reports each attempt once, when its outcome is decided: failed over, then the stream's group when it ends", async () => {
    const heard: string[] = [];
    const failing = attempt("a", [], new ConnectError("refused", Code.Unavailable));
    const stream = streamWithFailover([failing, attempt("b", ["x", "y"])], undefined, reports(heard));
    const iterator = stream[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.text).toBe("x");
    expect(heard).toEqual(["a failed_over Unavailable"]);
    await drain({ [Symbol.asyncIterator]: () => iterator });
    expect(heard).toEqual(["a failed_over Unavailable", "b ok"]);
  });

  it("reports a reader that stops early as ok, and an attempt that ends the request as failed", async () => {
    const stopped: string[] = [];
    for await (const message of streamWithFailover([attempt("a", ["x", "y"])], undefined, reports(stopped))) if (message.text === "x") break;
    expect(stopped).toEqual(["a ok"]);
    const last: string[] = [];
    await drain(streamWithFailover([attempt("a", [], new ConnectError("gone", Code.Unavailable))], undefined, reports(last)));
    expect(last).toEqual(["a failed Unavailable"]);
    const refused: string[] = [];
    await drain(streamWithFailover([attempt("a", [], new ConnectError("no", Code.NotFound)), attempt("b", ["z"])], undefined, reports(refused)));
    expect(refused).toEqual(["a failed NotFound"]);
    const midStream: string[] = [];
    await drain(streamWithFailover([attempt("a", ["x"], new ConnectError("reset", Code.Aborted)), attempt("b", ["z"])], undefined, reports(midStream)));
    expect(midStream).toEqual(["a failed Aborted"]);
  });
});

describe("callWithFailover (Tokenize)", () => {
  const answering = (group: string, answer: string | ConnectError) => {
    const result = { group, called: 0, call: async () => {
      result.called++;
      if (answer instanceof ConnectError) throw answer;
      return answer;
    } };
    return result satisfies UnaryAttempt<string>;
  };

  it("takes the first group's answer that comes, past groups that fail, and reports each failed group", async () => {
    const failed: string[] = [];
    const spare = answering("d", "late");
    const attempts = [answering("a", new ConnectError("refused", Code.Unavailable)), answering("b", new ConnectError("reset", Code.Aborted)), answering("c", "ids"), spare];
    expect(await callWithFailover(attempts, undefined, failedGroups(failed))).toBe("ids");
    expect(failed).toEqual(["a", "b"]);
    expect(spare.called).toBe(0);
  });

  it("never retries a shard's refusal or a client's cancellation, and fails with the last failure when all fail", async () => {
    const spare = answering("b", "ids");
    await expect(callWithFailover([answering("a", new ConnectError("bad", Code.InvalidArgument)), spare], undefined, UNHEARD)).rejects.toMatchObject({ code: Code.InvalidArgument });
    const cancelled = new AbortController();
    cancelled.abort();
    await expect(callWithFailover([answering("a", new ConnectError("reset", Code.Aborted)), spare], cancelled.signal, UNHEARD)).rejects.toMatchObject({ code: Code.Aborted });
    expect(spare.called).toBe(0);
    await expect(
      callWithFailover([answering("a", new ConnectError("first", Code.Unavailable)), answering("b", new ConnectError("last", Code.Unavailable))], undefined, UNHEARD),
    ).rejects.toMatchObject({ rawMessage: "last" });
  });
});

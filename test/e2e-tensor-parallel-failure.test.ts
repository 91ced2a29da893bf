// A tensor-parallel group losing a rank: the group is down for good, and nothing waits on it. Under
// `loraserve serve --num-shard 2`, a follower SIGKILLed while a stream runs ends that stream with an error event
// and every process stops within 5 s; the leader SIGKILLed takes the rest down as well. A follower whose leader
// dies exits by itself within 5 s. Behind a router with two groups, a request that had not begun streaming when
// a group failed is answered by the other group, and one that was streaming there ends with an error event.
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { projectFixture } from "./helpers/fixture-sets.js";
import { greedyIds, postGreedyGenerate } from "./helpers/greedy-reference.js";
import { isAlive, serve, startCli, type Started } from "./helpers/process.js";
import { startFollowers, type Followers } from "./helpers/tensor-parallel-group.js";

const set = projectFixture("demo");
/** What the issue allows between a rank's death and the rest of its group being gone. */
const GONE_WITHIN_MS = 5_000;
const START_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 90_000;
/** Two cores are shared by every rank: one thread each. */
const THREADS = ["--threads", "1"];
/** A greedy run of the demo model that goes on for 205 tokens before its EOS (159 with sql): long enough to be
 * running when a rank is killed after its first token. */
const LONG_STREAM = { inputs: "hello world", parameters: { max_new_tokens: 400 } };

type Ready = { event: "ready"; port: number };
const started: Started<{ event: "ready" }>[] = [];
const followerGroups: Followers[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((p) => p.stop("SIGKILL")));
  for (const pid of followerGroups.splice(0).flatMap((group) => group.pids())) if (isAlive(pid)) process.kill(pid, "SIGKILL");
});

/** A server-sent event stream's data, one event at a time, as it arrives. */
async function* eventData(response: Response): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of response.body!) {
    buffered += decoder.decode(chunk as Uint8Array, { stream: true });
    for (let end = buffered.search(/\r?\n\r?\n/); end >= 0; end = buffered.search(/\r?\n\r?\n/)) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = event
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice("data:".length).replace(/^ /, ""))
        .join("\n");
      if (data !== "") yield data;
    }
  }
}

interface StreamEvent {
  token?: { id: number };
  generated_text?: string | null;
  error?: string;
  error_type?: string;
}

/**
 * Opens TGI's /generate_stream, waits for its first token, calls `kill`, and returns every event after that
 * one; rejects if the stream has not ended GONE_WITHIN_MS after the kill.
 */
async function killWhileStreaming(url: string, body: unknown, kill: () => void): Promise<StreamEvent[]> {
  const response = await fetch(`${url}/generate_stream`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  expect(response.status).toBe(200);
  const events = eventData(response);
  const first = JSON.parse((await events.next()).value as string) as StreamEvent;
  expect(first.token?.id).toEqual(expect.any(Number));
  kill();
  const rest: StreamEvent[] = [];
  const drained = (async () => {
    for await (const data of events) rest.push(JSON.parse(data) as StreamEvent);
  })();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the stream was still open ${GONE_WITHIN_MS} ms after the kill`)), GONE_WITHIN_MS)));
  try {
    await Promise.race([drained, late]);
  } finally {
    clearTimeout(timer);
  }
  return rest;
}

/**
 * The stream ended with the router's UNAVAILABLE error event naming the group, before its answer was complete:
 * the leader, going down, lets each HTTP/2 session send its ended streams' trailers before closing it
 * (shard/server.ts), so the router learns the group failed rather than seeing the stream cut.
 */
function expectStreamError(rest: StreamEvent[], group: string | undefined = undefined): void {
  const last = rest.at(-1);
  const where = JSON.stringify(rest.slice(-2));
  expect(last?.error_type, where).toBe("unavailable");
  expect(last?.error, where).toMatch(group === undefined ? /failed after the stream began/ : `shard group ${group} failed after the stream began`);
  expect(rest.some((event) => typeof event.generated_text === "string"), where).toBe(false);
}

async function expectAllGone(pids: number[]): Promise<void> {
  await vi.waitFor(() => expect(pids.filter(isAlive), "processes still running").toEqual([]), { timeout: GONE_WITHIN_MS, interval: 50 });
}

describe("serve --num-shard 2 losing a rank", () => {
  const startServe = async () => {
    const server = await serve(["--model-id", set.modelDir, "--num-shard", "2", ...THREADS]);
    started.push(server);
    return server;
  };

  it("a follower killed while a stream runs: the stream ends with an error event and every process stops", async () => {
    const server = await startServe();
    const { ranks, router } = server.ready.pids;
    const rest = await killWhileStreaming(server.ready.url, LONG_STREAM, () => process.kill(ranks[1]!, "SIGKILL"));
    expectStreamError(rest);
    await expectAllGone([...ranks, router, server.pid]);
    expect(await server.exited).toEqual({ code: 1, signal: null });
    expect(server.stderr()).toMatch(/shard rank 1 was killed by SIGKILL/);
  }, TEST_TIMEOUT_MS);

  it("the leader killed: the follower and the router stop too", async () => {
    const server = await startServe();
    const { ranks, router } = server.ready.pids;
    process.kill(ranks[0]!, "SIGKILL");
    await expectAllGone([...ranks, router, server.pid]);
    expect(await server.exited).toEqual({ code: 1, signal: null });
    expect(server.stderr()).toMatch(/shard rank 0 was killed by SIGKILL/);
  }, TEST_TIMEOUT_MS);
});

/** Shard flags both ranks of a group must share (their engines must agree), and one shard alone takes too. */
function shardFlags(adapters: string[]): string[] {
  const list = adapters.map((id) => `${id}=${join(set.adaptersDir, id)}`).join(",");
  // One engine slot: the first adapter is resident in it, the other in host memory (as test/e2e-routing.test.ts).
  return ["--lora-adapters", list, "--max-loras", "1", ...THREADS];
}

/** A 2-rank group as `loraserve shard` runs it without serve: this test starts the leader, the helper its follower. */
async function startGroup(adapters: string[]): Promise<{ leader: Started<Ready>; followers: Followers }> {
  const flags = shardFlags(adapters);
  const followers = await startFollowers(set.modelDir, 2, flags);
  followerGroups.push(followers);
  const { masterAddr, masterPort } = followers.group;
  const leaderArgs = ["shard", "--model-id", set.modelDir, "--device", "cpu", "--shard-port", "0", "--num-shard", "2", "--rank", "0"];
  const leader = await startCli<Ready>([...leaderArgs, "--master-addr", masterAddr!, "--master-port", String(masterPort), ...flags]);
  started.push(leader);
  await followers.ready;
  return { leader, followers };
}

describe("a 2-rank shard group started rank by rank", () => {
  it("a follower exits by itself once its leader is killed", async () => {
    const { leader, followers } = await startGroup(["sql", "tone"]);
    const [follower] = followers.pids();
    process.kill(leader.pid, "SIGKILL");
    await expectAllGone([follower!]);
    const [exit] = await followers.exited();
    expect(exit!.signal).toBeNull();
    expect(exit!.code).not.toBe(0);
  }, TEST_TIMEOUT_MS);

  it("behind a router with another group: a new request moves there, the one streaming on the dead group ends with an error", async () => {
    // sql sits in the 2-rank group's slot and in the other group's host memory: the router sends it to the group.
    const [{ leader, followers }, other] = await Promise.all([
      startGroup(["sql", "tone"]),
      startCli<Ready>(["shard", "--model-id", set.modelDir, "--device", "cpu", "--shard-port", "0", ...shardFlags(["tone", "sql"])]),
    ]);
    started.push(other);
    const groupUri = `http://127.0.0.1:${leader.ready.port}`;
    const router = await startCli<Ready>(["router", "--port", "0", "--hostname", "127.0.0.1", "--shard-uri", groupUri, "--shard-uri", `http://127.0.0.1:${other.ready.port}`]);
    started.push(router);
    const url = `http://127.0.0.1:${router.ready.port}`;
    await vi.waitFor(async () => expect((await fetch(`${url}/health`)).status).toBe(200), { timeout: 10_000 });

    const [follower] = followers.pids();
    const streaming = { ...LONG_STREAM, parameters: { ...LONG_STREAM.parameters, adapter_id: "sql" } };
    let retried: Promise<Response> | undefined;
    const rest = await killWhileStreaming(url, streaming, () => {
      process.kill(follower!, "SIGKILL");
      // Sent as the group fails, before the router can have seen it down: it must still get the right answer.
      retried = postGreedyGenerate(url, set, "sql", set.refs.prompts[0]!.text!);
      // Awaited below; this only keeps a failure before then from also counting as unhandled.
      retried.catch(() => undefined);
    });
    expectStreamError(rest, groupUri);

    const response = await retried!;
    expect(response.status, await response.clone().text()).toBe(200);
    const { details } = (await response.json()) as { details: { tokens: { id: number }[] } };
    expect(details.tokens.map((t) => t.id)).toEqual(greedyIds(set, "sql", 0));
    // A request sent once the group is gone goes to the other group as well.
    const later = await postGreedyGenerate(url, set, "sql", set.refs.prompts[1]!.text!);
    expect(later.status).toBe(200);
    expect(((await later.json()) as { details: { tokens: { id: number }[] } }).details.tokens.map((t) => t.id)).toEqual(greedyIds(set, "sql", 1));

    // The group's leader saw the failure and exited, saying why.
    await expectAllGone([leader.pid, follower!]);
    expect(await leader.exited).toEqual({ code: 1, signal: null });
    expect(leader.stderr()).toMatch(/tensor-parallel group failed/);
  }, TEST_TIMEOUT_MS);
});

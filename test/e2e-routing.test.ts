// Routing across two real shard processes behind one real router: each request goes to the group that holds
// its adapter in an engine slot (the groups' Status tells the router, the router's routing series show it), and
// when a group is killed, requests still succeed through the other (moving there if they were sent to the dead
// group before its next Status). A pool whose first choice is unreachable moves to the next group before the
// first token, so the answer is still the reference's.
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { GenerateRequestSchema, TokenizeRequestSchema } from "../gen/loraserve/v1/generate_pb.js";
import { rankGroups } from "../router/affinity.js";
import { collectGeneration } from "../router/collect.js";
import { ShardPool } from "../router/shard-pool.js";
import { projectFixture } from "./helpers/fixture-sets.js";
import { expectAdapterChangesGreedy } from "./helpers/adapter-effect.js";
import { greedyIds, postGreedyGenerate } from "./helpers/greedy-reference.js";
import { startCli, type Started } from "./helpers/process.js";

const START_TIMEOUT_MS = 60_000;
/** Room for a few of the router's once-a-second Status polls. */
const STATUS_CHANGE_TIMEOUT_MS = 10_000;
const set = projectFixture("demo");
type Ready = { event: "ready"; port: number };
const started: Started<Ready>[] = [];
let shardA: Started<Ready>;
let shardB: Started<Ready>;
let routerUrl: string;
const uriOf = (shard: Started<Ready>): string => `http://127.0.0.1:${shard.ready.port}`;

/** A shard with one engine slot, so that its first adapter is resident in the slot and the other in host memory. */
function startShard(first: string, second: string): Promise<Started<Ready>> {
  const adapters = [first, second].map((id) => `${id}=${join(set.adaptersDir, id)}`).join(",");
  return startCli<Ready>(["shard", "--model-id", set.modelDir, "--shard-port", "0", "--lora-adapters", adapters, "--max-loras", "1", "--threads", "1"]);
}

beforeAll(async () => {
  [shardA, shardB] = await Promise.all([startShard("sql", "tone"), startShard("tone", "sql")]);
  started.push(shardA, shardB);
  const router = await startCli<Ready>(["router", "--port", "0", "--hostname", "127.0.0.1", "--shard-uri", uriOf(shardA), "--shard-uri", uriOf(shardB)]);
  started.push(router);
  routerUrl = `http://127.0.0.1:${router.ready.port}`;
  await vi.waitFor(async () => expect((await fetch(`${routerUrl}/health`)).status).toBe(200), STATUS_CHANGE_TIMEOUT_MS);
}, START_TIMEOUT_MS);

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop("SIGKILL")));
});

/** loraserve_requests_total of one adapter, by outcome. */
async function requests(adapter: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${routerUrl}/metrics`)).text();
  const counts = new Map<string, number>();
  for (const [, labelled, outcome, value] of text.matchAll(/^loraserve_requests_total\{adapter="([^"]+)",outcome="([^"]+)"\} (\d+)/gm)) {
    if (labelled === adapter) counts.set(outcome!, Number(value));
  }
  return counts;
}

/** loraserve_router_routed_total by `group|reason|resident`. */
async function routed(): Promise<Map<string, number>> {
  const text = await (await fetch(`${routerUrl}/metrics`)).text();
  const counts = new Map<string, number>();
  for (const [, group, reason, resident, value] of text.matchAll(
    /^loraserve_router_routed_total\{shard_group="([^"]+)",reason="([^"]+)",adapter_resident="([^"]+)"\} (\d+)/gm,
  )) {
    counts.set(`${group}|${reason}|${resident}`, Number(value));
  }
  return counts;
}

async function expectReference(variant: string): Promise<void> {
  const prompt = set.refs.prompts[0]!.text!;
  const res = await postGreedyGenerate(routerUrl, set, variant, prompt);
  expect(res.status).toBe(200);
  const body = (await res.json()) as { details: { tokens: { id: number }[] } };
  expectAdapterChangesGreedy(set, variant, 0);
  expect(body.details.tokens.map((t) => t.id)).toEqual(greedyIds(set, variant, 0));
}

it(
  "sends each adapter to the group holding it in a slot, and keeps serving through the other group once one is killed",
  async () => {
    await expectReference("sql");
    await expectReference("tone");
    const before = await routed();
    expect(before.get(`${uriOf(shardA)}|resident_device|true`)).toBe(1);
    expect(before.get(`${uriOf(shardB)}|resident_device|true`)).toBe(1);
    expect(before.size).toBe(2);

    await shardA.stop("SIGKILL");
    // Sent at once, before the router's next Status is likely: either it goes to the dead group and moves to
    // the other before any token, or the router has already seen the group gone. Both must answer right.
    await expectReference("sql");
    const after = await routed();
    // A failed attempt never saw the shard's header, so whether the adapter was resident there is unknown; B
    // holds sql in host memory, not in its one slot, so B's header says it was not resident in a slot.
    const failedOnA = after.get(`${uriOf(shardA)}|resident_device|unknown`) ?? 0;
    const movedToB = after.get(`${uriOf(shardB)}|failover|false`) ?? 0;
    const routedToB = after.get(`${uriOf(shardB)}|resident_host|false`) ?? 0;
    expect(failedOnA).toBe(movedToB);
    expect(movedToB + routedToB).toBe(1);
    // Each request counts once, as answered, whether or not it failed over first.
    expect(Object.fromEntries(await requests("sql"))).toEqual({ ok: 2 });

    // A group that failed a request, or whose Status does not answer, is not tried again: later requests go
    // straight to the other group (which has now loaded sql into its slot, in place of tone).
    const attemptsOnA = (counts: Map<string, number>): number =>
      [...counts].filter(([key]) => key.startsWith(`${uriOf(shardA)}|`)).reduce((sum, [, n]) => sum + n, 0);
    await vi.waitFor(async () => {
      await expectReference("sql");
      const now = await routed();
      expect((now.get(`${uriOf(shardB)}|resident_host|false`) ?? 0) + (now.get(`${uriOf(shardB)}|resident_device|true`) ?? 0)).toBeGreaterThanOrEqual(1);
    }, STATUS_CHANGE_TIMEOUT_MS);
    await expectReference("tone");
    expect(attemptsOnA(await routed())).toBe(attemptsOnA(after));
  },
  START_TIMEOUT_MS,
);

it("moves a request (Generate, and Tokenize) to the next group when its first choice cannot be reached, before any answer", async () => {
  // A pool that has not read any Status yet ranks by the hash alone: pick an unreachable address it ranks first.
  const live = uriOf(shardB);
  // Enough candidates that one outranks the live group whatever its port hashes to (16 missed about 1 run in 17).
  const dead = Array.from({ length: 4096 }, (_, i) => `http://127.0.${i >> 7}.${(i & 127) + 2}:1`).find(
    (uri) => rankGroups("tone", [live, uri].map((id) => ({ id, healthy: true, residency: "none" as const, load: 0 }))).candidates[0]!.id === uri,
  )!;
  const pool = new ShardPool([dead, live]);
  try {
    const request = create(GenerateRequestSchema, {
      inputs: set.refs.prompts[0]!.text!,
      adapterId: "tone",
      parameters: { maxNewTokens: set.refs.steps, details: true },
    });
    const answer = await collectGeneration(pool.generate(request, {}));
    expectAdapterChangesGreedy(set, "tone", 0);
    expect(answer.details!.tokens.map((t) => t.id)).toEqual(greedyIds(set, "tone", 0));
  } finally {
    pool.close();
  }
  // Tokenize moves on the same way (a fresh pool: the one above has marked the dead group down).
  const fresh = new ShardPool([dead, live]);
  try {
    const { tokens } = await fresh.tokenize(create(TokenizeRequestSchema, { inputs: set.refs.prompts[0]!.text!, adapterId: "tone" }), {});
    expect(tokens.map((t) => t.id)).toEqual(set.refs.prompts[0]!.ids);
  } finally {
    fresh.close();
  }
});

// AdapterService and /adapters through the router to a real shard with an adapter root and no adapter named at
// start: adapters found on first use answer like the transformers + peft reference, loading and unloading
// need the admin token, an adapter in use cannot be unloaded, and ids that leave the root are refused.
import { cpSync, mkdirSync, mkdtempSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { writeSyntheticAdapter } from "../bench/synthetic-model.js";
import { AdapterService, AdapterTier } from "../gen/loraserve/v1/adapter_pb.js";
import { GenerateService, type GenerateStreamResponse } from "../gen/loraserve/v1/generate_pb.js";
import { ShardService } from "../gen/loraserve/v1/shard_pb.js";
import type { OnePortServer } from "../router/one-port-server.js";
import { startRouter } from "../router/server.js";
import { startShard, type RunningShard } from "../shard/main.js";
import { loadModelFiles } from "../shard/model/model-files.js";
import { parseShardArgs } from "../shard/options.js";
import { projectFixture } from "./helpers/fixture-sets.js";
import { greedyIds, logprobAt } from "./helpers/greedy-reference.js";
import { readRefLogits, type RefLogits } from "./helpers/refs.js";

const TOLERANCE = 1e-4;
const TOKEN = "s3cret-admin-token";
const set = projectFixture("demo");

async function codeOf(call: Promise<unknown>): Promise<{ code: string; message: string }> {
  const error = await call.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConnectError);
  return { code: Code[(error as ConnectError).code], message: (error as ConnectError).rawMessage };
}

describe("adapters at run time through the router", () => {
  const fixture = set;
  const promptIndex = 0;
  const prompt = fixture.refs.prompts[promptIndex]!;
  let dir: string;
  let root: string;
  let shard: RunningShard;
  let router: OnePortServer;
  let closedRouter: OnePortServer;
  let base: string;
  let adapters: Client<typeof AdapterService>;
  let generate: Client<typeof GenerateService>;
  let refs: RefLogits;
  const admin = { headers: { authorization: `Bearer ${TOKEN}` } };

  beforeAll(async () => {
    dir = realpathSync(mkdtempSync(join(tmpdir(), "loraserve-adapter-service-")));
    root = join(dir, "root");
    for (const id of Object.keys(fixture.refs.adapters)) cpSync(join(fixture.adaptersDir, id), join(root, id), { recursive: true });
    // The same "tone" adapter as a Hugging Face cache entry.
    const snapshot = join(root, "models--acme--tone", "snapshots", "9f8e7d");
    cpSync(join(fixture.adaptersDir, "tone"), snapshot, { recursive: true });
    mkdirSync(join(root, "models--acme--tone", "refs"));
    writeFileSync(join(root, "models--acme--tone", "refs", "main"), "9f8e7d");
    cpSync(join(fixture.adaptersDir, "sql"), join(dir, "outside", "sql"), { recursive: true });
    symlinkSync(join(dir, "outside", "sql"), join(root, "link-out"));
    writeSyntheticAdapter(join(root, "too-big"), loadModelFiles(fixture.modelDir).spec, { rank: 40, seed: 3 });
    refs = readRefLogits(fixture.root);

    shard = await startShard(
      parseShardArgs(["--model-id", fixture.modelDir, "--adapter-root", root, "--max-loras", "2", "--max-cpu-loras", "2", "--max-lora-rank", "32", "--threads", "2"], {}),
    );
    const shardUris = [`http://127.0.0.1:${shard.port}`];
    router = await startRouter({ port: 0, hostname: "127.0.0.1", shardUris, maxBodyBytes: 100_000, adminToken: TOKEN });
    closedRouter = await startRouter({ port: 0, hostname: "127.0.0.1", shardUris, maxBodyBytes: 100_000 });
    base = `http://127.0.0.1:${router.port}`;
    const transport = createGrpcTransport({ baseUrl: base });
    adapters = createClient(AdapterService, transport);
    generate = createClient(GenerateService, transport);
  });
  afterAll(async () => {
    await closedRouter?.close();
    await router?.close();
    await shard?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const stream = (adapterId: string, maxNewTokens: number, signal?: AbortSignal): AsyncIterable<GenerateStreamResponse> =>
    generate.generateStream({ inputs: prompt.text!, adapterId, parameters: { maxNewTokens } }, { signal });

  async function expectReference(adapterId: string, variant: string): Promise<void> {
    const messages: GenerateStreamResponse[] = [];
    for await (const message of stream(adapterId, fixture.refs.steps)) messages.push(message);
    const expected = greedyIds(fixture, variant, promptIndex);
    expect(messages.map((m) => m.token!.id), adapterId).toEqual(expected);
    const logits = refs.steps(variant, promptIndex);
    messages.forEach((m, step) => {
      const token = m.token!;
      expect(Math.abs(token.logprob! - logprobAt(logits, step, token.id)), `${adapterId} step ${step}`).toBeLessThan(TOLERANCE);
    });
  }

  const http = (method: string, path: string, init: { body?: unknown; token?: string } = {}): Promise<Response> =>
    fetch(`${base}${path}`, {
      method,
      headers: { "content-type": "application/json", ...(init.token === undefined ? {} : { authorization: `Bearer ${init.token}` }) },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });

  it("loads adapters from the root on first use and answers like the reference, through 2 slots", async () => {
    expect((await adapters.listAdapters({})).adapters).toEqual([]);
    for (const variant of Object.keys(fixture.refs.adapters)) await expectReference(variant, variant);
    await expectReference("acme/tone", "tone");
    // Used again after being evicted from its slot (and from host memory): still the reference.
    await expectReference(Object.keys(fixture.refs.adapters)[0]!, Object.keys(fixture.refs.adapters)[0]!);

    const listed = (await adapters.listAdapters({})).adapters;
    expect(listed.map((a) => a.id).sort()).toEqual([...Object.keys(fixture.refs.adapters), "acme/tone"].sort());
    expect(listed.filter((a) => a.tier === AdapterTier.DEVICE).length).toBeLessThanOrEqual(2);
    expect(listed.every((a) => a.activeSequences === 0)).toBe(true);
    // The server's directories are the admin's to know: listed without the token, no adapter shows its path.
    expect(listed.map((a) => a.path)).toEqual(listed.map(() => ""));
    const tone = (await adapters.listAdapters({}, admin)).adapters.find((a) => a.id === "acme/tone")!;
    expect(tone).toMatchObject({ path: join(root, "models--acme--tone", "snapshots", "9f8e7d"), rank: fixture.refs.adapters.tone!.r });
    const status = await createClient(ShardService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${shard.port}` })).status({});
    expect(status.adapterIds.sort()).toEqual(listed.map((a) => a.id).sort());
  });

  it("needs the admin token to load and unload, over gRPC and HTTP; listing needs none", async () => {
    expect(await codeOf(adapters.loadAdapter({ id: "sql" }))).toMatchObject({ code: "Unauthenticated", message: expect.stringMatching(/Bearer TOKEN/) });
    expect((await codeOf(adapters.loadAdapter({ id: "sql" }, { headers: { authorization: "Bearer wrong" } }))).code).toBe("PermissionDenied");
    expect((await codeOf(adapters.unloadAdapter({ id: "sql" }))).code).toBe("Unauthenticated");
    const loaded = await adapters.loadAdapter({ id: "sql" }, admin);
    expect(loaded).toMatchObject({ id: "sql", path: join(root, "sql"), rank: fixture.refs.adapters.sql!.r });
    expect([AdapterTier.HOST, AdapterTier.DEVICE]).toContain(loaded.tier);

    const missing = await http("POST", "/adapters", { body: { id: "sql" } });
    expect(missing.status).toBe(401);
    expect(await missing.json()).toEqual({ error: expect.stringMatching(/admin token/), error_type: "unauthorized" });
    expect((await http("POST", "/adapters", { body: { id: "sql" }, token: "wrong" })).status).toBe(403);
    expect((await http("DELETE", "/adapters/sql", { token: "wrong" })).status).toBe(403);
    const ok = await http("POST", "/adapters", { body: { id: "acme/tone" }, token: TOKEN });
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { id: string; rank: number; target_modules: string[] };
    expect(body).toMatchObject({ id: "acme/tone", rank: fixture.refs.adapters.tone!.r });
    expect(body.target_modules.sort()).toEqual([...fixture.refs.adapters.tone!.targets].sort());

    const list = await http("GET", "/adapters");
    expect(list.status).toBe(200);
    expect(((await list.json()) as { adapters: { id: string }[] }).adapters.map((a) => a.id)).toContain("acme/tone");
    expect(await (await http("GET", "/adapters/acme/tone")).json()).toMatchObject({ id: "acme/tone", active_sequences: 0 });

    // A router started without a token refuses every load and unload, and says how to enable them.
    const closed = createClient(AdapterService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${closedRouter.port}` }));
    expect(await codeOf(closed.loadAdapter({ id: "sql" }, admin))).toEqual({ code: "PermissionDenied", message: expect.stringMatching(/--admin-token/) });
    const refused = await fetch(`http://127.0.0.1:${closedRouter.port}/adapters/sql`, { method: "DELETE", headers: { authorization: `Bearer ${TOKEN}` } });
    expect(refused.status).toBe(403);
    expect((await closed.listAdapters({})).adapters.length).toBeGreaterThan(0);
  });

  it("refuses to unload an adapter in use (FAILED_PRECONDITION / 409), keeps serving it, and unloads it once unused", async () => {
    expect((await adapters.loadAdapter({ id: "custom", path: "wide" }, admin)).path).toBe(join(root, "wide"));
    const abort = new AbortController();
    const tokens = stream("custom", 400, abort.signal)[Symbol.asyncIterator]();
    expect((await tokens.next()).done).toBe(false);

    expect(await codeOf(adapters.unloadAdapter({ id: "custom" }, admin))).toEqual({ code: "FailedPrecondition", message: expect.stringMatching(/used by 1 sequence/) });
    const conflict = await http("DELETE", "/adapters/custom", { token: TOKEN });
    expect(conflict.status).toBe(409);
    expect(await conflict.json()).toEqual({ error: expect.stringMatching(/"custom" is used by 1 sequence/), error_type: "conflict" });
    // The sequence that holds it goes on.
    for (let i = 0; i < 5; i++) expect((await tokens.next()).done).toBe(false);
    expect((await adapters.getAdapter({ id: "custom" })).activeSequences).toBe(1);
    abort.abort();
    await vi.waitFor(async () => expect((await adapters.getAdapter({ id: "custom" })).activeSequences).toBe(0));

    await adapters.unloadAdapter({ id: "custom" }, admin);
    expect((await codeOf(adapters.getAdapter({ id: "custom" }))).code).toBe("NotFound");
    // Loaded by path under an id no root holds: gone for good.
    expect((await codeOf(stream("custom", 2)[Symbol.asyncIterator]().next())).code).toBe("NotFound");
    expect((await http("GET", "/adapters/custom")).status).toBe(404);
    // Found in a root by its id: unloading forgets it, and the next request finds and loads it again.
    expect((await http("DELETE", "/adapters/wide", { token: TOKEN })).status).toBe(200);
    expect((await adapters.listAdapters({})).adapters.map((a) => a.id)).not.toContain("wide");
    await expectReference("wide", "wide");
  });

  it("unloads with drain (HTTP ?drain=true, gRPC drain): new requests are refused, the running one finishes, then it unloads", async () => {
    await adapters.loadAdapter({ id: "drained", path: "sql" }, admin);
    const steps = 24;
    const tokens = stream("drained", steps)[Symbol.asyncIterator]();
    expect((await tokens.next()).done).toBe(false);

    const unloaded = http("DELETE", "/adapters/drained?drain=true", { token: TOKEN });
    const probe = () => stream("drained", 1)[Symbol.asyncIterator]().next();
    await vi.waitFor(async () => expect(await codeOf(probe())).toEqual({ code: "FailedPrecondition", message: 'adapter "drained" is being unloaded: it takes no new requests' }));
    // The running stream is not cut: it produces every token it asked for.
    let produced = 1;
    while (!(await tokens.next()).done) produced++;
    expect(produced).toBe(steps);
    expect((await unloaded).status).toBe(200);
    expect((await codeOf(adapters.getAdapter({ id: "drained" }))).code).toBe("NotFound");

    await adapters.loadAdapter({ id: "drained", path: "sql" }, admin);
    await adapters.unloadAdapter({ id: "drained", drain: true }, admin);
    expect((await codeOf(adapters.getAdapter({ id: "drained" }))).code).toBe("NotFound");
    const bad = await http("DELETE", "/adapters/sql?drain=soon", { token: TOKEN });
    expect(bad.status).toBe(422);
    expect(await bad.json()).toEqual({ error: '`drain` must be true or false, not "soon"', error_type: "validation" });
  });

  it("picks up an adapter replaced on disk: the next requests answer like the new files", async () => {
    const dir = join(root, "swapped");
    cpSync(join(fixture.adaptersDir, "sql"), dir, { recursive: true });
    await expectReference("swapped", "sql");
    // Renamed over the old files, as a deployment does.
    for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
      cpSync(join(fixture.adaptersDir, "tone", file), join(dir, `${file}.new`));
      renameSync(join(dir, `${file}.new`), join(dir, file));
    }
    // The shard looks at the files at most once a second.
    await vi.waitFor(() => expectReference("swapped", "tone"), { timeout: 10_000, interval: 200 });
  });

  it("refuses ids and paths that leave the root, unknown ids and invalid adapters, with the reason", async () => {
    const first = (adapterId: string) => stream(adapterId, 2)[Symbol.asyncIterator]().next();
    expect(await codeOf(first("../sql"))).toEqual({ code: "InvalidArgument", message: expect.stringMatching(/"\.\." segment/) });
    expect(await codeOf(first("link-out"))).toEqual({ code: "PermissionDenied", message: expect.stringMatching(/outside the adapter root/) });
    expect((await codeOf(first("no/such-adapter"))).code).toBe("NotFound");
    // Plain text tokenizes the same for every adapter: Tokenize neither looks the adapter up nor reads it.
    expect((await generate.tokenize({ inputs: "hi there", adapterId: "no/such-adapter" })).tokens.length).toBeGreaterThan(0);
    expect(await codeOf(first("too-big"))).toEqual({ code: "InvalidArgument", message: expect.stringMatching(/"r" = 40 exceeds the shard's --max-lora-rank 32/) });
    expect((await codeOf(adapters.loadAdapter({ id: "x", path: "../outside/sql" }, admin))).code).toBe("InvalidArgument");
    expect((await codeOf(adapters.loadAdapter({ id: "x", path: "/etc" }, admin))).code).toBe("InvalidArgument");

    const absolute = await http("POST", "/adapters", { body: { id: "x", path: "/etc" }, token: TOKEN });
    expect(absolute.status).toBe(422);
    expect(await absolute.json()).toEqual({ error: expect.stringMatching(/absolute path/), error_type: "validation" });
    expect((await http("GET", "/adapters/link-out")).status).toBe(403);
    expect((await http("POST", "/adapters", { body: { path: "sql" }, token: TOKEN })).status).toBe(422);
    const tgi = await fetch(`${base}/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ inputs: "hi", parameters: { adapter_id: "../sql", max_new_tokens: 2 } }),
    });
    expect(tgi.status).toBe(422);
    // After all of that the shard still serves.
    await expectReference("tone", "tone");
  });
});

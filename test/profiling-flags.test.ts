// common/profiling-flags.ts: which of a launcher's Node flags its server processes get, and, end to end, that
// `node --cpu-prof --cpu-prof-dir=DIR cli.js serve` leaves a CPU profile of the launcher, the router and the shard.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { profilingFlags } from "../common/profiling-flags.js";
import { youngGenerationFlags } from "../common/young-generation.js";
import { projectFixture } from "./helpers/fixture-sets.js";
import { startCli } from "./helpers/process.js";

describe("profilingFlags", () => {
  it("passes on the profiling switches and their values, in either spelling, and nothing else", () => {
    expect(profilingFlags(["--cpu-prof", "--cpu-prof-dir", "/tmp/p", "--heap-prof-interval=1024", "--max-old-space-size=4096"])).toEqual([
      "--cpu-prof",
      "--cpu-prof-dir",
      "/tmp/p",
      "--heap-prof-interval=1024",
    ]);
    // One file name for several processes would have them overwrite each other's profile; a debugger port
    // serves one process.
    expect(profilingFlags(["--cpu-prof", "--cpu-prof-name=x.cpuprofile", "--inspect=9229", "--require", "--cpu-prof"])).toEqual(["--cpu-prof", "--cpu-prof"]);
    expect(profilingFlags([])).toEqual([]);
  });
});

describe("youngGenerationFlags", () => {
  it("gives a server process a 64 MiB semi-space unless the launcher's flags or NODE_OPTIONS set one", () => {
    expect(youngGenerationFlags([], "")).toEqual(["--max-semi-space-size=64"]);
    expect(youngGenerationFlags(["--cpu-prof"], "--max-old-space-size=4096")).toEqual(["--max-semi-space-size=64"]);
    // The launcher's own size goes on to its children; one in NODE_OPTIONS reaches them by itself.
    expect(youngGenerationFlags(["--max-semi-space-size=16"], "")).toEqual(["--max-semi-space-size=16"]);
    expect(youngGenerationFlags(["--max_semi_space_size=32"], "")).toEqual(["--max_semi_space_size=32"]);
    expect(youngGenerationFlags([], "--inspect --max-semi-space-size=8")).toEqual([]);
  });
});

describe("loraserve serve under node --cpu-prof", () => {
  const dir = mkdtempSync(join(tmpdir(), "loraserve-profiles-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("writes one CPU profile per process: launcher, router and shard", async () => {
    const { modelDir } = projectFixture("demo");
    const server = await startCli(["serve", "--port", "0", "--hostname", "127.0.0.1", "--model-id", modelDir, "--device", "cpu", "--log-level", "warn"], undefined, [
      "--cpu-prof",
      `--cpu-prof-dir=${dir}`,
    ]);
    const exit = await server.stop();
    expect(exit.code, server.stderr()).toBe(0);
    const profiles = readdirSync(dir).filter((name) => name.endsWith(".cpuprofile"));
    // Node names each profile CPU.<date>.<time>.<pid>.<thread>.<sequence>: three processes' main threads at least.
    const pids = new Set(profiles.map((name) => name.split(".")[3]));
    expect(pids.size, profiles.join(", ")).toBeGreaterThanOrEqual(3);
  }, 60_000);
});

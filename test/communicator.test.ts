// Runs native/check/comm_check.cc (loraserve_comm_checks, built with the addon when Gloo is found) as a real
// tensor-parallel group on 127.0.0.1: one process per rank, meeting through rank 0's tcp store, each checking
// every collective's result exactly. Then the same group with one rank killed after the meeting, where the
// others must fail with an error instead of hanging.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { unusedPort } from "./helpers/process.js";

const binary = join(dirname(fileURLToPath(import.meta.url)), "..", "native", "build", "Release", "loraserve_comm_checks");

// The checks' collective timeout; a rank still running six times as long is hung, and the guard kills it.
const TIMEOUT_SECONDS = 5;
const HUNG_AFTER_MS = 30_000;

interface RankRun {
  rank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runRank(world: number, rank: number, port: number, extra: string[]): Promise<RankRun> {
  const args = ["--world", `${world}`, "--rank", `${rank}`, "--master-addr", "127.0.0.1", "--master-port", `${port}`,
    "--timeout", `${TIMEOUT_SECONDS}`, ...extra];
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const guard = setTimeout(() => child.kill("SIGKILL"), HUNG_AFTER_MS);
  return new Promise((resolve) => {
    child.once("close", (code, signal) => {
      clearTimeout(guard);
      resolve({ rank, code, signal, stdout, stderr });
    });
  });
}

async function runGroup(world: number, dyingRank?: number): Promise<RankRun[]> {
  const port = await unusedPort();
  const ranks = Array.from({ length: world }, (_, rank) => rank);
  return Promise.all(ranks.map((rank) => runRank(world, rank, port, rank === dyingRank ? ["--die-after-rendezvous"] : [])));
}

const CHECKS = [
  "all-reduce sum of 1 floats",
  "all-reduce sum of 7 floats",
  "all-reduce sum of 4097 floats",
  "all-reduce sum of 1048576 floats",
  "broadcast of 1001 bytes from rank 0",
  "all-gather of 1 floats per rank",
  "all-gather of 1001 floats per rank",
  "barrier",
];

describe("communicator (Gloo over a tcp rendezvous)", () => {
  it("the check program is built", () => {
    // CI machines have libgloo-dev (scripts/quickstart.sh installs it); without it the native build leaves
    // this binary out and CPU tensor parallelism off, which must not pass unnoticed.
    expect(existsSync(binary), `${binary} is missing: install libgloo-dev and run npm run build:native`).toBe(true);
  });

  for (const world of [1, 2, 3]) {
    it(`a group of ${world} passes every collective check on every rank`, async () => {
      const runs = await runGroup(world);
      for (const run of runs) {
        const output = `rank ${run.rank} stdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
        expect(run.code, output).toBe(0);
        for (const check of [...CHECKS, `broadcast of 1001 bytes from rank ${world - 1}`]) {
          expect(run.stdout, output).toContain(`rank ${run.rank} PASS ${check}\n`);
        }
        expect(run.stdout, output).toContain(`rank ${run.rank}: ${CHECKS.length + 1} communicator checks, 0 failing`);
        expect(run.stdout, output).not.toContain("FAIL");
      }
    }, HUNG_AFTER_MS + 10_000);
  }

  for (const [world, dyingRank] of [[3, 2], [2, 0]] as const) {
    it(`when rank ${dyingRank} of ${world} dies after meeting, the others fail with an error instead of hanging`, async () => {
      const runs = await runGroup(world, dyingRank);
      for (const run of runs) {
        const output = `rank ${run.rank} stdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
        expect(run.stdout, output).toContain(`rank ${run.rank} of ${world}: rendezvous done`);
        if (run.rank === dyingRank) {
          expect(run.signal, output).toBe("SIGKILL");
          continue;
        }
        // Exit 2 is the program's "a collective threw"; a hung rank would have been killed by the guard instead.
        expect(run.signal, output).toBeNull();
        expect(run.code, output).toBe(2);
        expect(run.stderr, output).toMatch(new RegExp(`rank ${run.rank}: error: gloo .* failed on rank ${run.rank} of ${world}: `));
      }
    }, HUNG_AFTER_MS + 10_000);
  }
});

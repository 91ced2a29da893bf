// Runs the CUDA kernel checks (native/check/, built with the addon when CUDA is found) on a machine with a GPU:
// once as they are, where every element must match the CPU backend, and once with one element of every output
// planted wrong, where every check must fail and name that element (a check that passes then compares nothing).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const binary = join(dirname(fileURLToPath(import.meta.url)), "..", "native", "build", "Release", "loraserve_kernel_checks");

function gpuPresent(): boolean {
  try {
    execFileSync("nvidia-smi", ["-L"], { stdio: "ignore", timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

const skipReason = !existsSync(binary)
  ? `${binary} is not built (the CUDA build of native/ makes it)`
  : !gpuPresent()
    ? "no GPU: nvidia-smi does not work here"
    : "";
if (skipReason) console.log(`kernel checks skipped: ${skipReason}`);

function runChecks(plant: boolean) {
  const result = spawnSync(binary, [], {
    encoding: "utf8",
    timeout: 300_000,
    env: { ...process.env, LORASERVE_CHECK_PLANT: plant ? "1" : "" },
  });
  return { status: result.status, stdout: result.stdout };
}

describe.skipIf(skipReason !== "")(`CUDA kernel checks${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  it("every kernel matches the CPU backend element by element", () => {
    const { status, stdout } = runChecks(false);
    if (status !== 0) console.log(stdout);
    expect(stdout).toMatch(/all kernel checks passed: \d+ checks, 0 failing/);
    expect(status).toBe(0);
  }, 320_000);

  it("a planted wrong element fails every check, named by its index", () => {
    const { status, stdout } = runChecks(true);
    const planted = /planted one bad element in each of (\d+) checks: (\d+) failed/.exec(stdout);
    if (!planted) console.log(stdout);
    expect(planted).not.toBeNull();
    expect(Number(planted?.[2])).toBe(Number(planted?.[1]));
    expect(stdout).toMatch(/FAIL 1 of \d+ elements[^\n]*\n {4}at \[\d+(, \d+)*\]/);
    expect(status).toBe(1);
  }, 320_000);
});

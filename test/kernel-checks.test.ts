// Runs the CUDA kernel checks (native/check/, built with the addon when CUDA is found) on a machine with a GPU.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const binary = join(dirname(fileURLToPath(import.meta.url)), '..', 'native', 'build', 'Release', 'loraserve_kernel_checks');

function gpuPresent(): boolean {
  try {
    execFileSync('nvidia-smi', ['-L'], { stdio: 'ignore', timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

const skipReason = !existsSync(binary)
  ? `${binary} is not built (the CUDA build of native/ makes it)`
  : !gpuPresent()
    ? 'no GPU: nvidia-smi does not work here'
    : '';
if (skipReason) console.log(`kernel checks skipped: ${skipReason}`);

describe.skipIf(skipReason !== '')(`CUDA kernel checks${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('every kernel matches the CPU backend element by element', () => {
    const result = spawnSync(binary, [], { encoding: 'utf8', timeout: 300_000, env: { ...process.env, LORASERVE_CHECK_PLANT: '' } });
    if (result.status !== 0) console.log(result.stdout, result.stderr);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('all kernel checks passed');
  }, 320_000);
});

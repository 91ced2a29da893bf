// `npm run bench [-- --device cpu|cuda]`: runs the benchmarks of one device, each as its own process so that
// one's threads and memory never colour another's figures.
//   cpu (default): decode.js (CPU decode vs the bandwidth bound), observability-cost.js (tracing + metrics cost)
//   cuda: cuda-decode.js --baseline (8B-shaped model on the GPU, with transformers + PEFT as the baseline)
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const BENCHMARKS: Record<string, string[][]> = {
  cpu: [["decode.js"], ["observability-cost.js"]],
  cuda: [["cuda-decode.js", "--baseline"]],
};

const { values } = parseArgs({ options: { device: { type: "string", default: "cpu" } } });
const runs = BENCHMARKS[values.device!];
if (!runs) {
  console.error(`npm run bench: --device must be one of ${Object.keys(BENCHMARKS).join(", ")}, got ${values.device}`);
  process.exit(2);
}
for (const [script, ...args] of runs) {
  const result = spawnSync(process.execPath, [fileURLToPath(new URL(script!, import.meta.url)), ...args], { stdio: "inherit" });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

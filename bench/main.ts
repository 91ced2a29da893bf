// `npm run bench [-- --device cpu|cuda] [--dtype float16|bfloat16]`: runs the benchmarks of one device, each as its own process so that
// one's threads and memory never colour another's figures. `npm run bench -- --serve [--device cpu|cuda] [options]`
// runs the serving benchmark (serve.js) alone instead, with its own options (`-- --serve --help`).
//   cpu (default): decode.js (CPU decode vs the bandwidth bound), observability-cost.js (tracing + metrics cost),
//                  prefix-cache.js (time to first token with a 2000-token system prompt cached, against computed),
//                  loop-overhead.js (the shard's engine loop per decode step, against the H200's step times)
//   cuda: cuda-decode.js --baseline (8B-shaped model on the GPU, with transformers + PEFT as the baseline);
//         --dtype goes to it
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { profilingFlags } from "../common/profiling-flags.js";

const BENCHMARKS: Record<string, string[][]> = {
  cpu: [["decode.js"], ["observability-cost.js"], ["prefix-cache.js"], ["loop-overhead.js"]],
  cuda: [["cuda-decode.js", "--baseline"]],
};

const argv = process.argv.slice(2);
if (argv.includes("--serve")) {
  // The serving benchmark parses its options itself, --device among them: they pass through as given.
  const result = spawnSync(process.execPath, [...profilingFlags(), fileURLToPath(new URL("serve.js", import.meta.url)), ...argv.filter((arg) => arg !== "--serve")], { stdio: "inherit" });
  process.exit(result.status ?? 1);
}

const { values } = parseArgs({ options: { device: { type: "string", default: "cpu" }, dtype: { type: "string" } } });
const runs = BENCHMARKS[values.device!];
if (!runs) {
  console.error(`npm run bench: --device must be one of ${Object.keys(BENCHMARKS).join(", ")}, got ${values.device}`);
  process.exit(2);
}
if (values.dtype !== undefined && values.device !== "cuda") {
  console.error("npm run bench: --dtype applies to --device cuda");
  process.exit(2);
}
const dtypeArgs = values.dtype === undefined ? [] : ["--dtype", values.dtype];
for (const [script, ...args] of runs) {
  const result = spawnSync(process.execPath, [...profilingFlags(), fileURLToPath(new URL(script!, import.meta.url)), ...args, ...dtypeArgs], { stdio: "inherit" });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

// `node dist/bench/plot-serving.js --out docs/serving.png RESULTS.json...`: the plot of one or more serving
// benchmark runs (each the JSON `npm run bench -- --serve --out` wrote), a line per adapter count, workload and run.
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { renderPng, seriesOf, servingPlotSvg, type PlotPoint } from "./serving/plot.js";

const { values, positionals } = parseArgs({ options: { out: { type: "string" } }, allowPositionals: true });
if (values.out === undefined || positionals.length === 0) {
  console.error("usage: node dist/bench/plot-serving.js --out PLOT.png RESULTS.json...");
  process.exit(2);
}
const points: PlotPoint[] = positionals.flatMap((file) => {
  const parsed = JSON.parse(readFileSync(file, "utf8")) as { results?: PlotPoint[]; commit?: string; options?: { durationSeconds?: number } };
  if (!Array.isArray(parsed.results)) throw new Error(`${file}: no "results" array (is it a --serve --out file?)`);
  // Each file is one run: its points make lines of their own, named by what tells runs apart.
  const run = [parsed.commit, parsed.options?.durationSeconds === undefined ? undefined : `${parsed.options.durationSeconds} s per rate`].filter((part) => part !== undefined).join(", ");
  return parsed.results.map((result) => ({ ...result, run: run === "" ? file : run }));
});
writeFileSync(values.out, renderPng(servingPlotSvg(seriesOf(points))));
console.log(`wrote ${values.out}: ${seriesOf(points).length} series, ${points.length} points`);

// `node dist/bench/plot-serving.js --out docs/serving.png RESULTS.json...`: the plot of one or more serving
// benchmark runs (each the JSON `npm run bench -- --serve --out` wrote), a line per adapter count and workload.
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { renderPng, seriesOf, servingPlotSvg, type PlotPoint } from "./serving/plot.js";

const { values, positionals } = parseArgs({ options: { out: { type: "string" } }, allowPositionals: true });
if (values.out === undefined || positionals.length === 0) {
  console.error("usage: node dist/bench/plot-serving.js --out PLOT.png RESULTS.json...");
  process.exit(2);
}
const points: PlotPoint[] = positionals.flatMap((file) => {
  const parsed = JSON.parse(readFileSync(file, "utf8")) as { results?: PlotPoint[] };
  if (!Array.isArray(parsed.results)) throw new Error(`${file}: no "results" array (is it a --serve --out file?)`);
  return parsed.results;
});
writeFileSync(values.out, renderPng(servingPlotSvg(seriesOf(points))));
console.log(`wrote ${values.out}: ${seriesOf(points).length} series, ${points.length} points`);

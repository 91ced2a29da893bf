// The serving benchmark's plot (issue 15): output tokens/s and p99 TTFT against the offered rate, a line per
// adapter count and workload, drawn as SVG from the results `--out` writes and rendered to PNG by resvg. The
// drawing is plain: two panels sharing the x axis, linear scales from zero, a legend; a rate where some request
// failed is drawn hollow.
import { Resvg } from "@resvg/resvg-js";

/** What the plot reads of one result (a RateResult in the JSON). */
export interface PlotPoint {
  adapters: number;
  popularity: string;
  cv: number;
  offeredRate: number;
  outputTokensPerSecond: number;
  ttft: { p99: number };
  failed: number;
  /** Which run the point comes from (its commit and duration, say): runs of one workload are separate lines. */
  run?: string;
}

export interface Series {
  label: string;
  /** failed: some of the rate's requests failed (drawn hollow). */
  points: { x: number; throughput: number; ttftMs: number; failed: boolean }[];
}

const WIDTH = 1200;
const HEIGHT = 480;
const MARGIN = { left: 80, right: 20, top: 40, bottom: 60 };
const GAP = 90;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"];
const FONT = `font-family="DejaVu Sans, Arial, sans-serif" font-size="14"`;

/** One series per adapter count, workload and run, its points in rate order. */
export function seriesOf(points: readonly PlotPoint[]): Series[] {
  const byLabel = new Map<string, Series>();
  for (const p of points) {
    const label = `n = ${p.adapters}, ${p.popularity}, cv ${p.cv}${p.run === undefined ? "" : ` (${p.run})`}`;
    const series = byLabel.get(label) ?? { label, points: [] };
    series.points.push({ x: p.offeredRate, throughput: p.outputTokensPerSecond, ttftMs: p.ttft.p99 * 1000, failed: p.failed > 0 });
    byLabel.set(label, series);
  }
  for (const series of byLabel.values()) series.points.sort((a, b) => a.x - b.x);
  return [...byLabel.values()];
}

/** A round step for about five ticks up to `max`. */
function tickStep(max: number): number {
  const raw = max / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw)!;
}

/** 0, step, 2 step, ... up to max, each a multiple computed afresh (no sum of rounded steps) and trimmed. */
function ticks(max: number): number[] {
  const step = tickStep(max);
  return Array.from({ length: Math.round(max / step) + 1 }, (_, i) => Number((i * step).toPrecision(12)));
}

const axisMax = (values: number[]): number => {
  const max = Math.max(...values.filter(Number.isFinite), 1);
  return Math.ceil(max / tickStep(max)) * tickStep(max);
};

function panel(series: Series[], left: number, width: number, title: string, value: (p: Series["points"][number]) => number, xMax: number): string {
  const top = MARGIN.top;
  const height = HEIGHT - MARGIN.top - MARGIN.bottom;
  const yMax = axisMax(series.flatMap((s) => s.points.map(value)));
  const x = (v: number) => left + (v / xMax) * width;
  const y = (v: number) => top + height - (v / yMax) * height;
  const parts = [`<rect x="${left}" y="${top}" width="${width}" height="${height}" fill="none" stroke="#444"/>`];
  for (const v of ticks(yMax)) {
    parts.push(`<line x1="${left}" x2="${left + width}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 8}" y="${y(v) + 5}" text-anchor="end" ${FONT}>${v}</text>`);
  }
  for (const v of ticks(xMax)) {
    parts.push(`<text x="${x(v)}" y="${top + height + 20}" text-anchor="middle" ${FONT}>${v}</text>`);
  }
  parts.push(`<text x="${left + width / 2}" y="${top + height + 45}" text-anchor="middle" ${FONT}>offered requests/s</text>`);
  parts.push(`<text x="${left + width / 2}" y="${top - 14}" text-anchor="middle" ${FONT} font-weight="bold">${title}</text>`);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const drawn = s.points.filter((p) => Number.isFinite(value(p)));
    parts.push(`<polyline points="${drawn.map((p) => `${x(p.x).toFixed(1)},${y(value(p)).toFixed(1)}`).join(" ")}" fill="none" stroke="${color}" stroke-width="2.5"/>`);
    for (const p of drawn) {
      const fill = p.failed ? `fill="white" stroke="${color}" stroke-width="2"` : `fill="${color}"`;
      parts.push(`<circle cx="${x(p.x).toFixed(1)}" cy="${y(value(p)).toFixed(1)}" r="5" ${fill}/>`);
    }
  });
  return parts.join("\n");
}

/** The plot as SVG: throughput on the left, p99 TTFT on the right, the legend under the left panel's title. */
export function servingPlotSvg(series: Series[]): string {
  const width = (WIDTH - MARGIN.left - MARGIN.right - GAP) / 2;
  const xMax = axisMax(series.flatMap((s) => s.points.map((p) => p.x)));
  const legend = series.map((s, i) => {
    const top = MARGIN.top + 12 + i * 20;
    return `<rect x="${MARGIN.left + 12}" y="${top}" width="14" height="14" fill="${COLORS[i % COLORS.length]}"/><text x="${MARGIN.left + 32}" y="${top + 12}" ${FONT}>${s.label}</text>`;
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    panel(series, MARGIN.left, width, "output tokens/s", (p) => p.throughput, xMax),
    panel(series, MARGIN.left + width + GAP, width, "p99 TTFT (ms)", (p) => p.ttftMs, xMax),
    ...legend,
    `<text x="${MARGIN.left + 12}" y="${MARGIN.top + 30 + series.length * 20}" ${FONT} fill="#555">hollow: some requests failed</text>`,
    "</svg>",
  ].join("\n");
}

export function renderPng(svg: string): Buffer {
  return new Resvg(svg, { font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" } }).render().asPng();
}

// Every fixture set the tests run against: the project's own (fixtures/*, always present in a clone) and the
// independent one in ../shared when this checkout sits beside it.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const SHARED_FIXTURE = resolve(PROJECT_ROOT, "..", "shared", "fixtures", "tiny-llama");

export interface RefsJson {
  steps: number;
  prompts: { text: string | null; ids: number[] }[];
  adapters: Record<string, { r: number; alpha: number; scaling: number; targets: string[]; dtype: string; rslora: boolean; layers: number[] | null }>;
  variants: Record<string, { prompt: number; greedy_ids: number[]; greedy_text: string; min_margin: number; margins: number[] }[]>;
}

export interface FixtureSet {
  name: string;
  root: string;
  modelDir: string;
  adaptersDir: string;
  refs: RefsJson;
}

function fixtureAt(name: string, root: string): FixtureSet {
  return {
    name,
    root,
    modelDir: join(root, "model"),
    adaptersDir: join(root, "adapters"),
    refs: JSON.parse(readFileSync(join(root, "refs.json"), "utf8")) as RefsJson,
  };
}

let announced = false;

export function fixtureSets(): FixtureSet[] {
  const own = join(PROJECT_ROOT, "fixtures");
  const sets = existsSync(own)
    ? readdirSync(own)
        .filter((d) => existsSync(join(own, d, "refs.json")))
        .sort()
        .map((d) => fixtureAt(d, join(own, d)))
    : [];
  if (existsSync(join(SHARED_FIXTURE, "refs.json"))) {
    sets.push(fixtureAt("shared/tiny-llama", SHARED_FIXTURE));
  } else if (!announced) {
    announced = true;
    console.warn(`NOTE: ${SHARED_FIXTURE} is absent: the independent shared fixture is NOT checked in this run; only the project's own fixtures are.`);
  }
  return sets;
}

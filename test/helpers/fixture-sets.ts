// Every fixture set the tests run against: the project's own (fixtures/*, committed: a missing one is an error)
// and the independent one in ../shared when this checkout sits beside it (the only one that may be absent).
import { existsSync, readFileSync } from "node:fs";
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

/**
 * The project's own fixture sets (fixtures/<name>/, made by scripts/make_fixtures.py and committed). Named here,
 * not discovered, so that a missing or unreadable one fails the suite instead of turning into skipped tests.
 */
export const PROJECT_FIXTURES = ["demo", "linear"] as const;
export type ProjectFixtureName = (typeof PROJECT_FIXTURES)[number];

function fixtureAt(name: string, root: string): FixtureSet {
  const refsPath = join(root, "refs.json");
  let refs: RefsJson;
  try {
    refs = JSON.parse(readFileSync(refsPath, "utf8")) as RefsJson;
  } catch (error) {
    throw new Error(`fixture set ${name}: cannot read ${refsPath} (${(error as Error).message}); the project's fixtures are committed, regenerate them with scripts/make_fixtures.py`);
  }
  for (const dir of ["model", "adapters"]) {
    if (!existsSync(join(root, dir))) throw new Error(`fixture set ${name}: ${join(root, dir)} is missing`);
  }
  return { name, root, modelDir: join(root, "model"), adaptersDir: join(root, "adapters"), refs };
}

let announced = false;

/** The project's fixture sets in PROJECT_FIXTURES order, then ../shared's tiny-llama when this checkout sits beside it. */
export function fixtureSets(): FixtureSet[] {
  const sets = PROJECT_FIXTURES.map((name) => projectFixture(name));
  if (existsSync(join(SHARED_FIXTURE, "refs.json"))) {
    sets.push(fixtureAt("shared/tiny-llama", SHARED_FIXTURE));
  } else if (!announced) {
    announced = true;
    console.warn(`NOTE: ${SHARED_FIXTURE} is absent: the independent shared fixture is NOT checked in this run; only the project's own fixtures are.`);
  }
  return sets;
}

/**
 * The trained demo (fixtures/trained, made by scripts/train_demo.py): the quick start's model. Its references are
 * checked by test/e2e-trained-demo.test.ts, not by the suites over fixtureSets(), whose choices of prompt assume a
 * random model (high-entropy logits after any prompt, answers that run to the step limit instead of ending in EOS).
 */
export const TRAINED_DEMO = "trained";

/** One of the project's own fixture sets; throws when it is missing or unreadable. */
export function projectFixture(name: ProjectFixtureName | typeof TRAINED_DEMO): FixtureSet {
  return fixtureAt(name, join(PROJECT_ROOT, "fixtures", name));
}

// The serving benchmark's traffic, as S-LoRA's benchmarks/trace.py draws it: which adapter each request names,
// when it is sent and how long its prompt and answer are. Pure and seeded: the same spec gives the same trace,
// so a run can be repeated and two servers compared on identical traffic.
//   adapter       floor(n * X), X from numpy's power distribution (density alpha * x^(alpha - 1) on [0, 1):
//                 alpha = 1 is uniform, alpha = 0.3 piles onto the low indices), or Punica's Zipf skew
//                 (P(i) proportional to 1 / (i + 1)^s over the n adapters), or a flood: adapter 0 takes a share
//                 of the requests and the others split the rest evenly (the fairness test: does the flood
//                 slow the others' first tokens?)
//   arrivals      gamma inter-arrival times of mean 1 / rate and coefficient of variation cv (shape 1 / cv^2):
//                 cv = 1 is a Poisson process, cv = 4 comes in bursts
//   lengths       prompt and output tokens uniform on [lo, hi)

/** How requests spread over the adapters. */
export type Popularity = { kind: "power"; alpha: number } | { kind: "zipf"; exponent: number } | { kind: "flood"; share: number };

/** A half-open integer range [lo, hi). */
export interface LengthRange {
  lo: number;
  hi: number;
}

export interface WorkloadSpec {
  adapters: number;
  popularity: Popularity;
  /** Offered requests per second. */
  rate: number;
  /** Coefficient of variation of the inter-arrival times. */
  cv: number;
  /** Requests are sent while their arrival time is below this. */
  durationSeconds: number;
  inputTokens: LengthRange;
  outputTokens: LengthRange;
  seed: number;
}

export interface PlannedRequest {
  index: number;
  /** Seconds after the start of the run. */
  sendAt: number;
  /** 0 .. adapters - 1. */
  adapter: number;
  inputTokens: number;
  outputTokens: number;
}

/** A uniform draw on [0, 1). */
export type Random = () => number;

/** mulberry32: small, fast and good enough for traffic shapes; the seed fixes the whole stream. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal draw (Box-Muller; 1 - u keeps the logarithm's argument off zero). */
function normal(random: Random): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/** A gamma draw of this shape and scale: Marsaglia and Tsang's method, boosted by U^(1/k) for shape < 1. */
export function gamma(random: Random, shape: number, scale: number): number {
  if (shape < 1) return gamma(random, shape + 1, scale) * Math.pow(1 - random(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = normal(random);
    const v = (1 + c * x) ** 3;
    if (v <= 0) continue;
    const u = 1 - random();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v * scale;
  }
}

/** Draws adapter indices 0 .. n - 1 with this popularity. */
export function adapterSampler(n: number, popularity: Popularity, random: Random): () => number {
  if (popularity.kind === "power") {
    // numpy.random.power(a) is U^(1/a): its CDF is x^a.
    const inverse = 1 / popularity.alpha;
    return () => Math.min(n - 1, Math.floor(n * Math.pow(random(), inverse)));
  }
  if (popularity.kind === "flood") {
    if (n < 2) throw new Error("a flood needs 2 adapters or more: one to flood, others to be slowed or not");
    return () => (random() < popularity.share ? 0 : 1 + Math.min(n - 2, Math.floor(random() * (n - 1))));
  }
  const cdf: number[] = [];
  let total = 0;
  for (let i = 0; i < n; i++) cdf.push((total += 1 / Math.pow(i + 1, popularity.exponent)));
  return () => {
    const target = random() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! > target) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
}

export function uniformLength(random: Random, { lo, hi }: LengthRange): number {
  return lo + Math.floor(random() * (hi - lo));
}

/** Every request of the run, in sending order. */
export function planWorkload(spec: WorkloadSpec): PlannedRequest[] {
  const random = seededRandom(spec.seed);
  const pickAdapter = adapterSampler(spec.adapters, spec.popularity, random);
  const shape = 1 / (spec.cv * spec.cv);
  const scale = 1 / (spec.rate * shape);
  const requests: PlannedRequest[] = [];
  for (let at = gamma(random, shape, scale); at < spec.durationSeconds; at += gamma(random, shape, scale)) {
    requests.push({
      index: requests.length,
      sendAt: at,
      adapter: pickAdapter(),
      inputTokens: uniformLength(random, spec.inputTokens),
      outputTokens: uniformLength(random, spec.outputTokens),
    });
  }
  return requests;
}

/** "power:1", "power:0.3", "zipf:1.5", "flood:0.9": the flag's spelling of a popularity, and back. */
export function parsePopularity(text: string): Popularity {
  const [kind, value] = text.split(":");
  const parameter = Number(value);
  const usage = "a popularity is power:ALPHA or zipf:EXPONENT with a positive number, or flood:SHARE with a share in (0, 1)";
  if (value === undefined || value.trim() === "" || !(parameter > 0) || !Number.isFinite(parameter)) {
    throw new Error(`${usage}, got ${JSON.stringify(text)}`);
  }
  if (kind === "power") return { kind, alpha: parameter };
  if (kind === "zipf") return { kind, exponent: parameter };
  if (kind === "flood" && parameter < 1) return { kind, share: parameter };
  throw new Error(`${usage}, got ${JSON.stringify(text)}`);
}

export function popularityName(popularity: Popularity): string {
  switch (popularity.kind) {
    case "power":
      return `power:${popularity.alpha}`;
    case "zipf":
      return `zipf:${popularity.exponent}`;
    case "flood":
      return `flood:${popularity.share}`;
  }
}

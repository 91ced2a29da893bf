// `loraserve serve` on broken checkpoints: the shard refuses to start with one clear line naming the file,
// and the launcher exits non-zero after it (no stack trace, no crash, no server left behind).
import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fixtureSets } from "./helpers/fixture-sets.js";
import { runCli } from "./helpers/process.js";

const set = fixtureSets()[0]!;
const scratch = mkdtempSync(join(tmpdir(), "loraserve-e2e-startup-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const DTYPE_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** A safetensors file as its header and its data bytes. */
function readSafetensorsFile(file: string): { header: Record<string, Entry>; data: Buffer } {
  const bytes = readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")), data: bytes.subarray(8 + headerLength) };
}

function writeSafetensorsFile(file: string, header: Record<string, Entry>, data: Buffer): void {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([length, json, data]));
}

function tensorNames(header: Record<string, Entry>): string[] {
  return Object.keys(header).filter((k) => k !== "__metadata__");
}

/** A copy of the fixture (model and adapters) that a test may break. */
function copyFixture(name: string): { modelDir: string; adaptersDir: string } {
  const dir = join(scratch, name);
  cpSync(set.root, dir, { recursive: true });
  return { modelDir: join(dir, "model"), adaptersDir: join(dir, "adapters") };
}

async function expectRefusal(modelDir: string, adapters: string[], file: string): Promise<void> {
  const args = ["serve", "--port", "0", "--model-id", modelDir, ...(adapters.length ? ["--lora-adapters", adapters.join(",")] : [])];
  const { code, signal, stderr, stdout } = await runCli(args);
  expect(signal).toBeNull();
  expect(code).toBe(1);
  expect(stderr).toContain(file);
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stdout).not.toContain('"event":"ready"');
}


describe(`loraserve serve refuses a broken copy of ${set.name}`, () => {
  it("with a truncated safetensors file", async () => {
    const { modelDir } = copyFixture("truncated");
    const file = join(modelDir, "model.safetensors");
    truncateSync(file, Math.floor(readFileSync(file).length / 2));
    await expectRefusal(modelDir, [], file);
  });

  it("with a safetensors header whose offsets point past the file", async () => {
    const { modelDir } = copyFixture("lying-header");
    const file = join(modelDir, "model.safetensors");
    const { header, data } = readSafetensorsFile(file);
    const last = tensorNames(header).sort((a, b) => header[b]!.data_offsets[1] - header[a]!.data_offsets[1])[0]!;
    const [begin, end] = header[last]!.data_offsets;
    header[last]!.data_offsets = [begin + data.length, end + data.length];
    writeSafetensorsFile(file, header, data);
    await expectRefusal(modelDir, [], file);
  });

  it("with a config.json missing a required field", async () => {
    const { modelDir } = copyFixture("no-hidden-size");
    const file = join(modelDir, "config.json");
    const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    delete config.hidden_size;
    writeFileSync(file, JSON.stringify(config));
    await expectRefusal(modelDir, [], file);
  });

  it("with an adapter whose shapes do not fit the base", async () => {
    const { modelDir, adaptersDir } = copyFixture("misfit-adapter");
    const id = Object.keys(set.refs.adapters)[0]!;
    const file = join(adaptersDir, id, "adapter_model.safetensors");
    const { header, data } = readSafetensorsFile(file);
    // Widen one lora_A's input (as if trained for a larger base) and lay the data out again to match.
    const widened = tensorNames(header).find((name) => name.includes("lora_A"))!;
    header[widened]!.shape = [header[widened]!.shape[0]!, header[widened]!.shape[1]! * 2];
    const chunks: Buffer[] = [];
    let offset = 0;
    for (const name of tensorNames(header).sort((a, b) => header[a]!.data_offsets[0] - header[b]!.data_offsets[0])) {
      const entry = header[name]!;
      const nbytes = entry.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[entry.dtype]!;
      chunks.push(name === widened ? Buffer.alloc(nbytes) : data.subarray(...entry.data_offsets));
      entry.data_offsets = [offset, offset + nbytes];
      offset += nbytes;
    }
    writeSafetensorsFile(file, header, Buffer.concat(chunks));
    await expectRefusal(modelDir, [`${id}=${join(adaptersDir, id)}`], file);
  });
});

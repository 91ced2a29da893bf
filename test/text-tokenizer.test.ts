// The text layer on every fixture set: prompts encode to transformers' ids, and greedy ids detokenize, token
// by token, to transformers' decode (`greedy_text`, special tokens kept).
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeTokens, IncrementalDetokenizer } from "../shard/text/detokenizer.js";
import { TextCodec } from "../shard/text/tokenizer.js";
import { fixtureSets } from "./helpers/fixture-sets.js";

const sets = fixtureSets();
const scratch = mkdtempSync(join(tmpdir(), "loraserve-text-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function detokenize(codec: TextCodec, ids: number[]): string {
  const detokenizer = new IncrementalDetokenizer(codec);
  return ids.map((id) => detokenizer.push(id)).join("") + detokenizer.finish();
}

describe.each(sets)("text on $name", ({ modelDir, refs }) => {
  const codec = TextCodec.load(modelDir);

  it("encodes every prompt to transformers' ids", () => {
    const prompts = refs.prompts.filter((p) => p.text !== null);
    expect(prompts.length).toBeGreaterThan(0);
    for (const prompt of prompts) expect([...codec.encode(prompt.text!)], prompt.text!).toEqual(prompt.ids);
  });

  it("starts prompts with its BOS", () => {
    for (const prompt of refs.prompts) expect(prompt.ids[0]).toBe(codec.bosTokenId);
  });

  it("detokenizes every greedy continuation, token by token, to transformers' text", () => {
    for (const [variant, runs] of Object.entries(refs.variants)) {
      for (const run of runs) {
        const label = `${variant}/${run.prompt}`;
        expect(detokenize(codec, run.greedy_ids), label).toBe(run.greedy_text);
        expect(decodeTokens(codec, run.greedy_ids), label).toBe(run.greedy_text);
      }
    }
  });

  it("gives the same text token by token as at once, for any ids", () => {
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let n = 0; n < 300; n++) {
      const ids = Array.from({ length: 1 + Math.floor(random() * 16) }, () => Math.floor(random() * (codec.vocabSize + 2)));
      for (const skipSpecialTokens of [false, true]) {
        const detokenizer = new IncrementalDetokenizer(codec, { skipSpecialTokens });
        const text = ids.map((id) => detokenizer.push(id)).join("") + detokenizer.finish();
        expect(text, JSON.stringify(ids)).toBe(decodeTokens(codec, ids, { skipSpecialTokens }));
      }
    }
  });
});

describe("loading errors name the file", () => {
  const modelDir = sets[0]!.modelDir;
  const copy = (name: string) => {
    const dir = join(scratch, name);
    cpSync(modelDir, dir, { recursive: true });
    return dir;
  };

  it("missing tokenizer.json", () => {
    const dir = copy("missing");
    unlinkSync(join(dir, "tokenizer.json"));
    expect(() => TextCodec.load(dir)).toThrow(join(dir, "tokenizer.json"));
  });

  it("corrupt tokenizer.json", () => {
    const dir = copy("corrupt");
    writeFileSync(join(dir, "tokenizer.json"), readFileSync(join(dir, "tokenizer.json"), "utf8").slice(0, 500));
    expect(() => TextCodec.load(dir)).toThrow(join(dir, "tokenizer.json"));
  });

  it("a decoder it cannot turn into bytes", () => {
    const dir = copy("decoder");
    const json = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({ ...json, decoder: { type: "WordPiece", prefix: "##", cleanup: true } }));
    expect(() => TextCodec.load(dir)).toThrow(new RegExp(`^${join(dir, "tokenizer.json")}: decoder "WordPiece" is not supported`));
  });

  it("a corrupt generation_config.json", () => {
    const dir = copy("generation");
    writeFileSync(join(dir, "generation_config.json"), '{"eos_token_id": "two"}');
    expect(() => TextCodec.load(dir)).toThrow(join(dir, "generation_config.json"));
  });
});

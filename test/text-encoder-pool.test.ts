// Tokenizing in worker threads: the same ids as TextCodec.encode, and a long prompt leaves the event loop
// and the other worker free, so a short prompt sent after it is answered first.
import { afterAll, describe, expect, it } from "vitest";
import { EncoderPool } from "../shard/text/encoder-pool.js";
import { TextCodec } from "../shard/text/tokenizer.js";
import { fixtureSets } from "./helpers/fixture-sets.js";

/** Long enough that encoding it takes the library a good part of a second. */
const LONG_TEXT = "the quick brown fox jumps over the lazy dog. ".repeat(1500);

describe.each(fixtureSets())("EncoderPool on $name", ({ modelDir, refs }) => {
  const codec = TextCodec.load(modelDir);
  const pool = EncoderPool.start(modelDir, 2);
  afterAll(() => pool.close());

  it("encodes every prompt as TextCodec.encode does, with and without special tokens", async () => {
    const prompts = refs.prompts.filter((p) => p.text !== null);
    expect(prompts.length).toBeGreaterThan(0);
    for (const { text } of prompts) {
      expect([...(await pool.encode(text!))], text!).toEqual([...codec.encode(text!)]);
      expect([...(await pool.encode(text!, { addSpecialTokens: false }))], text!).toEqual([...codec.encode(text!, { addSpecialTokens: false })]);
    }
  });

  it("answers a short prompt and runs the event loop while a long one is being encoded", async () => {
    const order: string[] = [];
    const long = pool.encode(LONG_TEXT).then((ids) => (order.push("long"), ids));
    const short = pool.encode("hello").then((ids) => (order.push("short"), ids));
    setImmediate(() => order.push("event loop"));
    const [longIds, shortIds] = await Promise.all([long, short]);
    expect(order.indexOf("long")).toBe(2);
    expect([...shortIds]).toEqual([...codec.encode("hello")]);
    expect(longIds.length).toBe(codec.encode(LONG_TEXT).length);
  });
});

it("refuses prompts once closed", async () => {
  const pool = EncoderPool.start(fixtureSets()[0]!.modelDir, 1);
  await pool.close();
  await expect(pool.encode("hello")).rejects.toThrow(/closed/);
});

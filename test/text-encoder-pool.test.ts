// Tokenizing and rendering chat templates in worker threads: the same ids as TextCodec.encode and the same text
// as ChatTemplate.render, and a long prompt leaves the event loop and the other worker free, so a short prompt
// sent after it is answered first.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ChatTemplate, ChatTemplateError, ChatTemplates, type ChatMessage } from "../shard/text/chat-template.js";
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

describe("EncoderPool rendering chat templates", () => {
  const demo = fixtureSets().find((set) => set.name === "demo")!;
  const template = new ChatTemplates(demo.modelDir).forAdapter(null)!;
  const pool = EncoderPool.start(demo.modelDir, 2);
  const scratch = mkdtempSync(join(tmpdir(), "loraserve-pool-"));
  afterAll(async () => {
    await pool.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("renders a conversation as ChatTemplate.render does", async () => {
    const conversation: ChatMessage[] = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Grüße aus München" },
      { role: "assistant", content: "Hallo" },
      { role: "user", content: "日本語 🙂" },
    ];
    expect(await pool.render(template, conversation)).toBe(template.render(conversation));
  });

  it("answers a short conversation and runs the event loop while a long one is being rendered", async () => {
    const long = Array.from({ length: 20_000 }, (_, i) => ({ role: i % 2 === 0 ? "user" : "assistant", content: `message ${i}` }));
    const order: string[] = [];
    const longText = pool.render(template, long).then((text) => (order.push("long"), text));
    const shortText = pool.render(template, [{ role: "user", content: "hi" }]).then((text) => (order.push("short"), text));
    setImmediate(() => order.push("event loop"));
    const [rendered] = await Promise.all([longText, shortText]);
    expect(order.indexOf("long")).toBe(2);
    expect(rendered).toBe(template.render(long));
  });

  it("refuses a conversation the template raises on with its ChatTemplateError, naming the file", async () => {
    writeFileSync(
      join(scratch, "tokenizer_config.json"),
      JSON.stringify({ chat_template: "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with a user message') }}{% endif %}ok" }),
    );
    const strict = ChatTemplate.load(scratch)!;
    expect(await pool.render(strict, [{ role: "user", content: "a" }])).toBe("ok");
    const refusal = pool.render(strict, [{ role: "assistant", content: "a" }]);
    await expect(refusal).rejects.toThrow(ChatTemplateError);
    await expect(refusal).rejects.toThrow(/tokenizer_config\.json\) cannot render these messages: .*Conversations must start with a user message/);
  });
});

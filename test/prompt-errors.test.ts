// A prompt is the client's to fix whenever the tokenizer cannot take it: encodePrompt refuses it with an
// InvalidRequestError (INVALID_ARGUMENT, TGI 422, OpenAI 400), never a plain error the shard would report as
// INTERNAL (TGI 424 "generation").
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodePrompt, InvalidRequestError } from "../shard/engine/generate-request.js";
import { EncoderPool } from "../shard/text/encoder-pool.js";
import { TextCodec, UnencodableTextError } from "../shard/text/tokenizer.js";

const LLAMA2 = fileURLToPath(new URL("./fixtures/byte-fallback/llama2/", import.meta.url));

describe("a prompt the tokenizer has no token for", () => {
  let dir: string;
  let pool: EncoderPool;

  beforeAll(() => {
    // The Llama-2 tokenizer without byte fallback, whose unknown token is not in its vocab: "🙂" gets no id.
    dir = mkdtempSync(join(tmpdir(), "loraserve-no-unk-"));
    const tokenizer = JSON.parse(readFileSync(join(LLAMA2, "tokenizer.json"), "utf8")) as { model: Record<string, unknown> };
    tokenizer.model = { ...tokenizer.model, unk_token: "<missing>", byte_fallback: false };
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
    copyFileSync(join(LLAMA2, "tokenizer_config.json"), join(dir, "tokenizer_config.json"));
    pool = EncoderPool.start(dir, 1);
  });

  afterAll(async () => {
    await pool?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("is an UnencodableTextError from the codec", () => {
    expect(() => TextCodec.load(dir).encode("hi 🙂")).toThrow(UnencodableTextError);
  });

  it("is refused as invalid input by encodePrompt", async () => {
    const context = { encode: pool.encode.bind(pool), render: pool.render.bind(pool), chatTemplate: () => null, limits: { maxInputTokens: 100 }, maxBytesPerToken: null };
    const refusal = encodePrompt({ inputs: "hi 🙂", messages: [], adapterId: "" }, context);
    await expect(refusal).rejects.toThrow(InvalidRequestError);
    await expect(refusal).rejects.toThrow(/cannot encode "hi 🙂": a piece has no token and the tokenizer has no unknown token/);
  });
});

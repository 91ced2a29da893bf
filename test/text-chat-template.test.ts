// Chat templates against texts written by hand from each template's definition: ChatML (shared tiny-llama),
// Llama-2 [INST] with <<SYS>> and `trim` (fixtures/demo), none (fixtures/linear); the list form, the
// chat_template.jinja file, an adapter directory's own template and the special tokens it inherits.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ChatTemplate, ChatTemplateError, ChatTemplates } from "../shard/text/chat-template.js";
import { PROJECT_ROOT, SHARED_FIXTURE } from "./helpers/fixture-sets.js";

const DEMO = join(PROJECT_ROOT, "fixtures", "demo", "model");
const LINEAR = join(PROJECT_ROOT, "fixtures", "linear", "model");
const TINY = join(SHARED_FIXTURE, "model");

const conversation = [
  { role: "system", content: "  You are terse. " },
  { role: "user", content: "Hi there\n" },
];

const scratch = mkdtempSync(join(tmpdir(), "loraserve-chat-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A fresh directory holding `files` (name → text). */
function dirWith(name: string, files: Record<string, string>): string {
  const dir = join(scratch, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
  return dir;
}

const ROLES = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}|{% endfor %}";

describe("ChatTemplate", () => {
  it.skipIf(!existsSync(TINY))("renders the shared tiny-llama ChatML template with BOS and the generation prompt", () => {
    const template = ChatTemplate.load(TINY)!;
    expect(template.render(conversation)).toBe(
      "<|begin_of_text|><|im_start|>system\n  You are terse. <|im_end|>\n<|im_start|>user\nHi there\n<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("renders the demo Llama-2 template: <<SYS>> block, [INST] turns, trimmed content, EOS after answers", () => {
    const template = ChatTemplate.load(DEMO)!;
    expect(template.render(conversation)).toBe("<s><<SYS>>\nYou are terse.\n<</SYS>>\n\n[INST] Hi there [/INST]");
    expect(template.render([...conversation, { role: "assistant", content: " Hello. " }, { role: "user", content: "More" }])).toBe(
      "<s><<SYS>>\nYou are terse.\n<</SYS>>\n\n[INST] Hi there [/INST] Hello.</s>[INST] More [/INST]",
    );
  });

  it("finds no template in a base model without one", () => {
    expect(ChatTemplate.load(LINEAR)).toBeNull();
  });

  it('uses the "default" entry of a list of named templates, and refuses a list without one', () => {
    const listed = (templates: { name: string; template: string }[]) =>
      dirWith("listed", { "tokenizer_config.json": JSON.stringify({ bos_token: "<s>", chat_template: templates }) });
    const dir = listed([
      { name: "tool_use", template: "TOOLS" },
      { name: "default", template: "{{ bos_token }}" + ROLES },
    ]);
    expect(ChatTemplate.load(dir)!.render([{ role: "user", content: "a" }])).toBe("<s>user: a|");
    expect(() => ChatTemplate.load(listed([{ name: "tool_use", template: "TOOLS" }]))).toThrow(/tokenizer_config\.json: .*without one named "default"/);
  });

  it("prefers chat_template.jinja to tokenizer_config.json, as transformers does", () => {
    const dir = dirWith("jinja", {
      "tokenizer_config.json": JSON.stringify({ eos_token: "</s>", chat_template: "FROM CONFIG" }),
      "chat_template.jinja": ROLES + "{{ eos_token }}",
    });
    expect(ChatTemplate.load(dir)!.render([{ role: "user", content: "a" }])).toBe("user: a|</s>");
  });

  it("passes add_generation_prompt as true", () => {
    const dir = dirWith("generation-prompt", {
      "tokenizer_config.json": JSON.stringify({ chat_template: "{% if add_generation_prompt %}GO{% else %}NO{% endif %}" }),
    });
    expect(ChatTemplate.load(dir)!.render([{ role: "user", content: "a" }])).toBe("GO");
  });

  it("names the file of a template that cannot be parsed, and turns raise_exception into a ChatTemplateError", () => {
    const broken = dirWith("broken", { "tokenizer_config.json": JSON.stringify({ chat_template: "{% for m in messages %}" }) });
    expect(() => ChatTemplate.load(broken)).toThrow(/broken\/tokenizer_config\.json: cannot parse the chat template/);
    const strict = dirWith("strict", {
      "tokenizer_config.json": JSON.stringify({
        chat_template: "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with a user message') }}{% endif %}ok",
      }),
    });
    const template = ChatTemplate.load(strict)!;
    expect(template.render([{ role: "user", content: "a" }])).toBe("ok");
    expect(() => template.render([{ role: "assistant", content: "a" }])).toThrow(ChatTemplateError);
    expect(() => template.render([{ role: "assistant", content: "a" }])).toThrow(/Conversations must start with a user message/);
  });
});

describe("ChatTemplates", () => {
  it("gives an adapter its own template, with the base model's special tokens where it names none", () => {
    const templates = new ChatTemplates(DEMO);
    const own = dirWith("adapter-own", { "tokenizer_config.json": JSON.stringify({ chat_template: "{{ bos_token }}" + ROLES + "{{ eos_token }}" }) });
    expect(templates.forAdapter(own)!.render([{ role: "user", content: "a" }])).toBe("<s>user: a|</s>");
    const renamed = dirWith("adapter-tokens", {
      "tokenizer_config.json": JSON.stringify({ bos_token: "<B>", chat_template: "{{ bos_token }}" + ROLES + "{{ eos_token }}" }),
    });
    expect(templates.forAdapter(renamed)!.render([{ role: "user", content: "a" }])).toBe("<B>user: a|</s>");
  });

  it("falls back to the base model's template for an adapter without one, and to none when the base has none", () => {
    const plain = dirWith("adapter-plain", { "adapter_config.json": "{}" });
    const demo = new ChatTemplates(DEMO);
    expect(demo.forAdapter(plain)!.render([{ role: "user", content: "a" }])).toBe("<s>[INST] a [/INST]");
    expect(demo.forAdapter(null)!.render([{ role: "user", content: "a" }])).toBe("<s>[INST] a [/INST]");
    const linear = new ChatTemplates(LINEAR);
    expect(linear.forAdapter(null)).toBeNull();
    expect(linear.forAdapter(plain)).toBeNull();
  });
});

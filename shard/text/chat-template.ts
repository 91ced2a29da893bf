// Conversations → prompt text, as transformers' apply_chat_template(messages, add_generation_prompt=True,
// tokenize=False) renders them: the directory's Jinja chat template (chat_template.jinja, which transformers
// prefers, else tokenizer_config.json's `chat_template`: a string, or a list of {name, template} of which
// "default" is used) with `messages`, `add_generation_prompt` and the special tokens of the config (bos_token,
// eos_token, ...). The text already spells every special token the template writes (BOS included): encode it
// without adding special tokens again.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Template } from "@huggingface/jinja";
import { LoadError } from "../model/load-error.js";
import { contentOf, optionalJson, SPECIAL_TOKEN_KEYS } from "./tokenizer.js";

export interface ChatMessage {
  role: string;
  content: string;
}

/** A conversation the template refuses (its raise_exception, e.g. roles that do not alternate). */
export class ChatTemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ChatTemplateError";
  }
}

type SpecialTokens = Record<string, string>;

/** What a template is rendered with: the messages, the generation prompt flag and the special tokens. */
export type TemplateVariables = Record<string, unknown>;

/** The template source of `dir` and the file it came from, or null when the directory has none. */
function templateSource(dir: string): { source: string; file: string } | null {
  const jinjaPath = join(dir, "chat_template.jinja");
  if (existsSync(jinjaPath)) {
    try {
      return { source: readFileSync(jinjaPath, "utf8"), file: jinjaPath };
    } catch (error) {
      throw new LoadError(jinjaPath, `cannot read: ${(error as Error).message}`);
    }
  }
  const configPath = join(dir, "tokenizer_config.json");
  const value = optionalJson(configPath).chat_template;
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return { source: value, file: configPath };
  if (Array.isArray(value)) {
    const entry = value.find((t: unknown) => typeof t === "object" && t !== null && (t as { name?: unknown }).name === "default");
    if (entry === undefined) throw new LoadError(configPath, 'chat_template is a list of named templates without one named "default"');
    const template = (entry as { template?: unknown }).template;
    if (typeof template !== "string") throw new LoadError(configPath, 'chat_template "default" has no template string');
    return { source: template, file: configPath };
  }
  throw new LoadError(configPath, "chat_template must be a string or a list of {name, template}");
}

/** The special tokens transformers hands the template: tokenizer_config.json's, overridden by special_tokens_map.json. */
function specialTokens(dir: string): SpecialTokens {
  const config = { ...optionalJson(join(dir, "tokenizer_config.json")), ...optionalJson(join(dir, "special_tokens_map.json")) };
  const tokens: SpecialTokens = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    const content = contentOf(config[key]);
    if (content !== null) tokens[key] = content;
  }
  return tokens;
}

export class ChatTemplate {
  private constructor(
    private readonly template: Template,
    /** The Jinja text, which a worker thread parses again to render off the event loop (EncoderPool). */
    readonly source: string,
    private readonly specialTokens: SpecialTokens,
    /** The file the template was read from, for messages. */
    readonly file: string,
  ) {}

  /**
   * The chat template of a model or adapter directory, or null when it has none. Special tokens the directory
   * does not name come from `inherited` (an adapter's template uses the base model's). Throws a LoadError
   * naming the file when a template is there but cannot be parsed.
   */
  static load(dir: string, inherited: SpecialTokens = {}): ChatTemplate | null {
    const found = templateSource(resolve(dir));
    if (found === null) return null;
    let template: Template;
    try {
      template = new Template(found.source);
    } catch (error) {
      throw new LoadError(found.file, `cannot parse the chat template: ${(error as Error).message}`);
    }
    return new ChatTemplate(template, found.source, { ...inherited, ...specialTokens(resolve(dir)) }, found.file);
  }

  /** The prompt text of a conversation, ending with the generation prompt. Throws ChatTemplateError when the template refuses it. */
  render(messages: readonly ChatMessage[]): string {
    try {
      return this.template.render(this.variables(messages));
    } catch (error) {
      throw this.refusal((error as Error).message);
    }
  }

  variables(messages: readonly ChatMessage[]): TemplateVariables {
    return { ...this.specialTokens, messages: messages.map(({ role, content }) => ({ role, content })), add_generation_prompt: true };
  }

  /** The error for a conversation this template's rendering failed on with `message`. */
  refusal(message: string): ChatTemplateError {
    return new ChatTemplateError(`the chat template (${this.file}) cannot render these messages: ${message}`);
  }
}

/**
 * Which template a request uses: the adapter's own when its directory ships one, else the base model's. Adapter
 * templates are read on first use and kept per directory.
 */
export class ChatTemplates {
  private readonly byAdapterDir = new Map<string, ChatTemplate | null>();
  private readonly baseTokens: SpecialTokens;
  private readonly base: ChatTemplate | null;

  /** Reads the base model's template (throws a LoadError naming the file when it is unusable). */
  constructor(modelDir: string) {
    this.baseTokens = specialTokens(resolve(modelDir));
    this.base = ChatTemplate.load(modelDir);
  }

  /** The template for the base model (adapterDir null) or for an adapter in `adapterDir`; null when neither has one. */
  forAdapter(adapterDir: string | null): ChatTemplate | null {
    if (adapterDir === null) return this.base;
    let own = this.byAdapterDir.get(adapterDir);
    if (own === undefined) {
      own = ChatTemplate.load(adapterDir, this.baseTokens);
      this.byAdapterDir.set(adapterDir, own);
    }
    return own ?? this.base;
  }
}

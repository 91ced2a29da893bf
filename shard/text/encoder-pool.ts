// Prompt work off the event loop. @huggingface/tokenizers and @huggingface/jinja are plain JavaScript and slow
// on long input (tens of kilobytes of text take a few hundred milliseconds to tokenize, twenty thousand chat
// messages as long to render): on the shard's main thread that stalls every stream and the Status answers the
// router's /health is made of. Each worker thread holds its own copy of the model's tokenizer and parses chat
// templates as it meets them; a job goes to the worker with the fewest waiting (TGI's --validation-workers).
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { ChatMessage, ChatTemplate } from "./chat-template.js";
import { checkedIds, readTokenizerSource, type EncodeOptions } from "./tokenizer.js";

/** A prompt → what the engine reads, as TextCodec.encode and ChatTemplate.render do, without blocking the caller's thread. */
export interface PromptEncoder {
  encode(text: string, options?: EncodeOptions): Promise<Int32Array>;
  /** Throws the template's ChatTemplateError when it refuses the conversation. */
  render(template: ChatTemplate, messages: readonly ChatMessage[]): Promise<string>;
}

/**
 * The worker's program, as CommonJS source (eval) so that it runs the same from dist/ and from the TypeScript
 * sources under test: it only calls the libraries; the answers are checked on the main thread.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { Tokenizer } = require(workerData.tokenizers);
const { Template } = require(workerData.jinja);
const tokenizer = new Tokenizer(workerData.tokenizerJson, workerData.tokenizerConfig);
const templates = new Map();
function templateOf(source) {
  let template = templates.get(source);
  if (template === undefined) templates.set(source, (template = new Template(source)));
  return template;
}
parentPort.on("message", (job) => {
  try {
    if (job.kind === "encode") {
      parentPort.postMessage({ id: job.id, ids: tokenizer.encode(job.text, { add_special_tokens: job.addSpecialTokens }).ids });
    } else {
      parentPort.postMessage({ id: job.id, text: templateOf(job.source).render(job.variables) });
    }
  } catch (error) {
    parentPort.postMessage({ id: job.id, error: String(error && error.message ? error.message : error) });
  }
});
`;

/** A worker's answer to job `id`: the job's own fields (ids, text), or the library's error message. */
type Reply = { id: number; error?: string };

interface Job {
  settle(reply: Reply): void;
  /** The worker died before replying. */
  fail(error: Error): void;
}

interface EncoderThread {
  worker: Worker;
  jobs: Map<number, Job>;
}

export class EncoderPool implements PromptEncoder {
  private readonly threads: EncoderThread[] = [];
  private nextJobId = 0;
  private closed = false;

  private constructor(private readonly workerData: Record<string, unknown>) {}

  /** Starts `workers` threads, each building the tokenizer of `modelDir` (errors as TextCodec.load's). */
  static start(modelDir: string, workers: number): EncoderPool {
    const { tokenizerJson, tokenizerConfig } = readTokenizerSource(modelDir);
    const resolveLibrary = createRequire(import.meta.url).resolve;
    const pool = new EncoderPool({
      tokenizers: resolveLibrary("@huggingface/tokenizers"),
      jinja: resolveLibrary("@huggingface/jinja"),
      tokenizerJson,
      tokenizerConfig,
    });
    for (let i = 0; i < workers; i++) pool.threads.push(pool.startThread());
    return pool;
  }

  private startThread(): EncoderThread {
    const thread: EncoderThread = { worker: new Worker(WORKER_SOURCE, { eval: true, workerData: this.workerData }), jobs: new Map() };
    // A pool nobody closed must not keep the process alive; pending jobs belong to requests that do.
    thread.worker.unref();
    thread.worker.on("message", (reply: Reply) => {
      const job = thread.jobs.get(reply.id);
      if (job === undefined) return;
      thread.jobs.delete(reply.id);
      job.settle(reply);
    });
    thread.worker.on("error", (error) => this.lose(thread, error));
    thread.worker.on("exit", (code) => this.lose(thread, new Error(`the prompt worker exited (code ${code})`)));
    return thread;
  }

  /** A thread that died fails its jobs and is replaced, so the pool keeps its size. */
  private lose(thread: EncoderThread, error: Error): void {
    const index = this.threads.indexOf(thread);
    if (index < 0) return;
    for (const job of thread.jobs.values()) job.fail(error);
    thread.jobs.clear();
    if (this.closed) this.threads.splice(index, 1);
    else this.threads[index] = this.startThread();
  }

  /**
   * Sends a job to the least busy thread. `read` turns its answer into the result (and may refuse it);
   * `failure` is the error for a message the library threw with.
   */
  private run<Answer, T>(job: Record<string, unknown>, read: (answer: Answer) => T, failure: (message: string) => Error): Promise<T> {
    if (this.closed) return Promise.reject(new Error("the prompt worker pool is closed"));
    const thread = this.threads.reduce((least, candidate) => (candidate.jobs.size < least.jobs.size ? candidate : least));
    const id = this.nextJobId++;
    return new Promise((resolve, reject) => {
      thread.jobs.set(id, {
        settle: (reply) => {
          if (reply.error !== undefined) return reject(failure(reply.error));
          try {
            // The worker answers a job of this kind with its fields (WORKER_SOURCE).
            resolve(read(reply as unknown as Answer));
          } catch (error) {
            reject(error as Error);
          }
        },
        fail: reject,
      });
      thread.worker.postMessage({ ...job, id });
    });
  }

  encode(text: string, options: EncodeOptions = {}): Promise<Int32Array> {
    return this.run(
      { kind: "encode", text, addSpecialTokens: options.addSpecialTokens ?? true },
      ({ ids }: { ids: (number | undefined)[] }) => checkedIds(text, ids),
      (message) => new Error(message),
    );
  }

  render(template: ChatTemplate, messages: readonly ChatMessage[]): Promise<string> {
    return this.run(
      { kind: "render", source: template.source, variables: template.variables(messages) },
      ({ text }: { text: string }) => text,
      (message) => template.refusal(message),
    );
  }

  /** Stops the threads; jobs still waiting fail. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.threads.map((thread) => thread.worker.terminate()));
  }
}

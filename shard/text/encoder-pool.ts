// Tokenizing off the event loop. @huggingface/tokenizers is plain JavaScript and slow on long text (tens of
// kilobytes take a few hundred milliseconds): on the shard's main thread that stalls every stream and the
// Status answers the router's /health is made of. Each worker thread holds its own copy of the model's
// tokenizer; a prompt goes to the worker with the fewest prompts waiting (TGI's --validation-workers).
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import { checkedIds, readTokenizerSource, type EncodeOptions } from "./tokenizer.js";

/** Text → token ids, as TextCodec.encode, without blocking the caller's thread. */
export interface PromptEncoder {
  encode(text: string, options?: EncodeOptions): Promise<Int32Array>;
}

/**
 * The worker's program, as CommonJS source (eval) so that it runs the same from dist/ and from the TypeScript
 * sources under test: it only calls the library; the ids are checked on the main thread (checkedIds).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { Tokenizer } = require(workerData.library);
const tokenizer = new Tokenizer(workerData.tokenizerJson, workerData.tokenizerConfig);
parentPort.on("message", ({ id, text, addSpecialTokens }) => {
  try {
    parentPort.postMessage({ id, ids: tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids });
  } catch (error) {
    parentPort.postMessage({ id, error: String(error && error.message ? error.message : error) });
  }
});
`;

type Reply = { id: number; ids: (number | undefined)[] } | { id: number; error: string };

interface Job {
  text: string;
  resolve(ids: Int32Array): void;
  reject(error: Error): void;
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
    const library = createRequire(import.meta.url).resolve("@huggingface/tokenizers");
    const pool = new EncoderPool({ library, tokenizerJson, tokenizerConfig });
    for (let i = 0; i < workers; i++) pool.threads.push(pool.startThread());
    return pool;
  }

  private startThread(): EncoderThread {
    const thread: EncoderThread = { worker: new Worker(WORKER_SOURCE, { eval: true, workerData: this.workerData }), jobs: new Map() };
    // A pool nobody closed must not keep the process alive; pending prompts belong to requests that do.
    thread.worker.unref();
    thread.worker.on("message", (reply: Reply) => {
      const job = thread.jobs.get(reply.id);
      if (job === undefined) return;
      thread.jobs.delete(reply.id);
      if ("error" in reply) job.reject(new Error(reply.error));
      else {
        try {
          job.resolve(checkedIds(job.text, reply.ids));
        } catch (error) {
          job.reject(error as Error);
        }
      }
    });
    thread.worker.on("error", (error) => this.lose(thread, error));
    thread.worker.on("exit", (code) => this.lose(thread, new Error(`the tokenizer worker exited (code ${code})`)));
    return thread;
  }

  /** A thread that died fails its prompts and is replaced, so the pool keeps its size. */
  private lose(thread: EncoderThread, error: Error): void {
    const index = this.threads.indexOf(thread);
    if (index < 0) return;
    for (const job of thread.jobs.values()) job.reject(error);
    thread.jobs.clear();
    if (this.closed) this.threads.splice(index, 1);
    else this.threads[index] = this.startThread();
  }

  encode(text: string, options: EncodeOptions = {}): Promise<Int32Array> {
    if (this.closed) return Promise.reject(new Error("the tokenizer pool is closed"));
    const thread = this.threads.reduce((least, candidate) => (candidate.jobs.size < least.jobs.size ? candidate : least));
    const id = this.nextJobId++;
    return new Promise((resolve, reject) => {
      thread.jobs.set(id, { text, resolve, reject });
      thread.worker.postMessage({ id, text, addSpecialTokens: options.addSpecialTokens ?? true });
    });
  }

  /** Stops the threads; prompts still waiting fail. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.threads.map((thread) => thread.worker.terminate()));
  }
}

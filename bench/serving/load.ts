// Sends one planned trace open-loop (each request at its arrival time, whether or not earlier ones have
// answered) and waits for every one to end, finished or failed: the outcomes are as many as the requests sent.
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { ClientFailure, type Clients } from "./clients.js";
import type { Protocol, RequestOutcome } from "./outcome.js";
import { promptText } from "./tokenizer.js";
import type { PlannedRequest } from "./workload.js";

/** Which API a request goes through: one of them, or the two in turn. */
export type ProtocolChoice = Protocol | "alternate";

export interface LoadOptions {
  clients: Clients;
  requests: readonly PlannedRequest[];
  adapterIds: readonly string[];
  protocol: ProtocolChoice;
  /** Seeds the prompts' text. */
  seed: number;
  /** A request still running after this long is aborted and counted failed ("timeout"). */
  requestTimeoutMs: number;
  /** Called about once a second while the load runs, and once at its end. */
  progress(counts: LoadCounts): void;
}

export interface LoadCounts {
  planned: number;
  sent: number;
  finished: number;
  failed: number;
}

const PROGRESS_MS = 1000;

function protocolOf(choice: ProtocolChoice, index: number): Protocol {
  if (choice !== "alternate") return choice;
  return index % 2 === 0 ? "grpc" : "openai";
}

export async function runLoad(options: LoadOptions): Promise<RequestOutcome[]> {
  const { clients, requests, adapterIds, requestTimeoutMs } = options;
  const counts: LoadCounts = { planned: requests.length, sent: 0, finished: 0, failed: 0 };
  const start = performance.now();
  const now = (): number => performance.now() - start;

  const send = async (request: PlannedRequest): Promise<RequestOutcome> => {
    const protocol = protocolOf(options.protocol, request.index);
    const signal = AbortSignal.timeout(requestTimeoutMs);
    const sentAt = now();
    let firstTokenAt: number | null = null;
    let tokens = 0;
    let failure: string | null = null;
    let detail = "";
    try {
      await clients.streamers[protocol](
        { prompt: promptText(options.seed, request.index, request.inputTokens), adapterId: adapterIds[request.adapter]!, maxNewTokens: request.outputTokens, signal },
        () => {
          firstTokenAt ??= now();
          tokens++;
        },
      );
      if (tokens !== request.outputTokens) {
        failure = "wrong length";
        detail = `${tokens} tokens streamed, ${request.outputTokens} asked for with ignore_eos`;
      }
    } catch (error) {
      failure = error instanceof ClientFailure ? error.kind : "client error";
      detail = (error as Error).message;
    }
    if (failure === null) counts.finished++;
    else counts.failed++;
    return { index: request.index, adapter: request.adapter, protocol, expectedTokens: request.outputTokens, sentAt, firstTokenAt, endedAt: now(), tokens, failure, detail };
  };

  const timer = setInterval(() => options.progress(counts), PROGRESS_MS);
  try {
    const inFlight: Promise<RequestOutcome>[] = [];
    for (const request of requests) {
      const wait = request.sendAt * 1000 - now();
      if (wait > 0) await sleep(wait);
      inFlight.push(send(request));
      counts.sent++;
    }
    const outcomes = await Promise.all(inFlight);
    options.progress(counts);
    return outcomes;
  } finally {
    clearInterval(timer);
  }
}

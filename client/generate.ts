// `loraserve generate`: a GenerateStream call with the generated Connect client, printing text as it comes. The
// prompt is one user message, which the server renders with the chat template (the adapter's own, else the
// model's), as a chat model expects; --raw sends the text as it is, for a base model without a template.
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { parseArgs } from "node:util";
import { GenerateService } from "../gen/loraserve/v1/generate_pb.js";

export const GENERATE_USAGE = `loraserve generate [--adapter ID] [--raw] [--max-new-tokens N] [--url URL] [--http1] PROMPT

  PROMPT is sent as one user message, rendered with the chat template.
  --adapter ID           adapter to apply (default: the base model alone)
  --raw                  send PROMPT as the model's input text, without the chat template
  --max-new-tokens N     tokens to generate (default: the server's)
  --url URL              the router (env LORASERVE_URL, default http://127.0.0.1:3000)
  --http1                use HTTP/1.1 instead of HTTP/2`;

export async function generateMain(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      adapter: { type: "string", default: "" },
      raw: { type: "boolean", default: false },
      "max-new-tokens": { type: "string" },
      url: { type: "string", default: process.env.LORASERVE_URL ?? "http://127.0.0.1:3000" },
      http1: { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  if (positionals.length === 0) throw new Error(`a prompt is required\n\n${GENERATE_USAGE}`);
  const maxNewTokens = values["max-new-tokens"] === undefined ? undefined : Number(values["max-new-tokens"]);
  if (maxNewTokens !== undefined && !(Number.isInteger(maxNewTokens) && maxNewTokens > 0)) throw new Error("--max-new-tokens must be a positive integer");
  // An explicit session, closed at the end: an idle HTTP/2 connection would otherwise keep the process alive.
  const session = new Http2SessionManager(values.url);
  const transport = values.http1
    ? createConnectTransport({ baseUrl: values.url, httpVersion: "1.1" })
    : createConnectTransport({ baseUrl: values.url, httpVersion: "2", sessionManager: session });
  const client = createClient(GenerateService, transport);
  try {
    const prompt = positionals.join(" ");
    const input = values.raw ? { inputs: prompt } : { messages: [{ role: "user", content: prompt }] };
    const stream = client.generateStream({ ...input, adapterId: values.adapter, parameters: { maxNewTokens } });
    for await (const message of stream) process.stdout.write(message.text);
    process.stdout.write("\n");
  } finally {
    session.abort();
  }
}

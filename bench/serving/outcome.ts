// What the client saw of one request: every request sent ends as exactly one outcome, finished or failed, so
// the run can prove that none vanished.

export type Protocol = "grpc" | "openai";

export interface RequestOutcome {
  index: number;
  adapter: number;
  protocol: Protocol;
  /** The output tokens asked for (max_new_tokens with ignore_eos). */
  expectedTokens: number;
  /** Milliseconds from the run's start: when it was sent, its first token came, and it ended. */
  sentAt: number;
  firstTokenAt: number | null;
  endedAt: number;
  /** Tokens streamed back. */
  tokens: number;
  /** Null when it finished with every token asked for; else the kind of failure ("http 429", "grpc Unavailable", ...). */
  failure: string | null;
  /** The failure's message, for the report's first example of each kind. */
  detail: string;
}

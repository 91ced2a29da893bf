// The HTTP/2 session to one shard group, watched for losses: a session that ends after a GOAWAY from the shard
// (its drain, or nghttp2's rate limits), after an error (a reset, a PING timeout), or while streams were open on
// it (the shard went away without a word) is reported, so that operators can count what every request on it
// risked. A session closed by this router (its shutdown) or by the session manager for idleness is not a loss.
import type http2 from "node:http2";
import { Http2SessionManager } from "@connectrpc/connect-node";

/** Why a session was lost: the shard's GOAWAY, a session error, or a close with streams still open. */
export type SessionLoss = "goaway" | "error" | "closed";

export class WatchedSessionManager extends Http2SessionManager {
  private readonly watched = new WeakSet<http2.ClientHttp2Session>();
  /** Streams open per session: a close with some open is a loss even without a GOAWAY or an error. */
  private readonly openStreams = new WeakMap<http2.ClientHttp2Session, number>();
  private closing = false;

  constructor(
    url: string,
    private readonly lost: (reason: SessionLoss) => void,
  ) {
    super(url);
  }

  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session as http2.ClientHttp2Session | undefined;
    if (session) {
      this.watch(session);
      this.openStreams.set(session, (this.openStreams.get(session) ?? 0) + 1);
      // A session being destroyed closes its streams first: those closes are the loss, not the end of a stream.
      stream.once("close", () => {
        if (!session.destroyed) this.openStreams.set(session, (this.openStreams.get(session) ?? 1) - 1);
      });
    }
    return stream;
  }

  override abort(reason?: Error): void {
    this.closing = true;
    super.abort(reason);
  }

  private watch(session: http2.ClientHttp2Session): void {
    if (this.watched.has(session)) return;
    this.watched.add(session);
    let reason: SessionLoss | null = null;
    session.once("goaway", () => (reason ??= "goaway"));
    // Beside the session manager's own listener (which it removes when the session ends): never an unheard error.
    session.on("error", () => (reason ??= "error"));
    session.once("close", () => {
      if (!this.closing && reason === null && (this.openStreams.get(session) ?? 0) > 0) reason = "closed";
      if (!this.closing && reason !== null) this.lost(reason);
    });
  }
}

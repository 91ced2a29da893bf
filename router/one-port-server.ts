// One TCP port for HTTP/1.1 and cleartext HTTP/2. Browsers, curl and Connect's HTTP/1.1 transport speak
// HTTP/1.1; gRPC clients open HTTP/2 with prior knowledge (no upgrade). A connection is told apart by its
// first bytes: only HTTP/2 starts with the connection preface. Given a certificate and key, the port speaks
// TLS only, and the TLS handshake's ALPN picks the protocol instead ("h2", else HTTP/1.1).
import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { listen } from "../common/listen.js";
import type { NodeHandler } from "./node-handler.js";

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export interface OnePortServer {
  port: number;
  /** Stops accepting, ends every open connection (streams in flight included) and resolves when closed. */
  close(): Promise<void>;
}

/** Reads until the bytes either equal the preface or diverge from it, then hands the socket over untouched. */
function routeByPreface(socket: net.Socket, route: (isHttp2: boolean) => void): void {
  let head = Buffer.alloc(0);
  const dropOnEarlyError = (): void => {
    socket.destroy();
  };
  const onData = (chunk: Buffer): void => {
    head = Buffer.concat([head, chunk]);
    const compared = Math.min(head.length, HTTP2_PREFACE.length);
    const matches = head.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
    if (matches && head.length < HTTP2_PREFACE.length) return;
    socket.off("data", onData);
    socket.off("error", dropOnEarlyError);
    socket.pause();
    socket.unshift(head);
    route(matches);
  };
  socket.on("data", onData);
  socket.on("error", dropOnEarlyError);
}

/** The public port's certificate chain and private key, PEM. */
export interface TlsCredentials {
  cert: Buffer;
  key: Buffer;
}

export function readTlsFiles({ certFile, keyFile }: { certFile: string; keyFile: string }): TlsCredentials {
  return { cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

/** Listens, and on close ends every connection it accepted (streams in flight included). */
async function listenClosingAll(server: net.Server, port: number, hostname: string): Promise<OnePortServer> {
  const sockets = new Set<net.Socket>();
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  const boundPort = await listen(server, port, hostname);
  return {
    port: boundPort,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** `tls` null: cleartext, HTTP/1.1 and HTTP/2 told apart by the preface. */
export async function listenOnePort(handler: NodeHandler, port: number, hostname: string, tls: TlsCredentials | null = null): Promise<OnePortServer> {
  // HTTPS: HTTP/2 for clients that offer "h2" in ALPN, HTTP/1.1 for the others (allowHTTP1).
  if (tls !== null) return listenClosingAll(http2.createSecureServer({ ...tls, allowHTTP1: true }, handler), port, hostname);
  const http1Server = http.createServer(handler);
  const http2Server = http2.createServer(handler);
  const server = net.createServer((socket) => {
    routeByPreface(socket, (isHttp2) => {
      if (isHttp2) {
        // The HTTP/2 session reads what the socket already buffered (the peeked bytes) by itself.
        http2Server.emit("connection", socket);
      } else {
        // The HTTP/1.1 parser only listens for 'data': the paused socket must flow again.
        http1Server.emit("connection", socket);
        socket.resume();
      }
    });
  });
  return listenClosingAll(server, port, hostname);
}

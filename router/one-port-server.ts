// One TCP port for HTTP/1.1 and cleartext HTTP/2. Browsers, curl and Connect's HTTP/1.1 transport speak
// HTTP/1.1; gRPC clients open HTTP/2 with prior knowledge (no upgrade). A connection is told apart by its
// first bytes: only HTTP/2 starts with the connection preface.
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

export async function listenOnePort(handler: NodeHandler, port: number, hostname: string): Promise<OnePortServer> {
  const http1Server = http.createServer(handler);
  const http2Server = http2.createServer(handler);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
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

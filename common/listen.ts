// Binds a server (net, http or http2: all are net.Server) and resolves with the port it got, so that port 0
// ("pick a free one") can be reported; a bind error (port in use) rejects instead of being thrown later.
import type { AddressInfo, Server } from "node:net";

export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

// The router's /health status as the launcher polls it, 0 while it does not answer. Over TLS (--tls-cert) the
// certificate is not checked: this is the launcher asking its own child on this host whether it is up, with
// nothing secret in the question, and the certificate names the public host, not the address asked.
import { get as httpsGet } from "node:https";

export function routerHealth(url: string): Promise<number> {
  if (!url.startsWith("https:")) return fetch(`${url}/health`).then((r) => r.status, () => 0);
  return new Promise((resolve) => {
    const request = httpsGet(`${url}/health`, { rejectUnauthorized: false }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.once("error", () => resolve(0));
  });
}

// loraserve's version, from its package.json: two levels up from the built router (dist/router/), one from
// the source (router/).
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

function readVersion(): string {
  const candidates = ["../package.json", "../../package.json"].map((relative) => fileURLToPath(new URL(relative, import.meta.url)));
  const path = candidates.find((candidate) => existsSync(candidate));
  if (path === undefined) throw new Error(`loraserve: no package.json at ${candidates.join(" or ")}`);
  return (JSON.parse(readFileSync(path, "utf8")) as { version: string }).version;
}

export const VERSION = readVersion();

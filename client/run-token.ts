// The internal link's token for one `loraserve serve` run, when the user named none: a random secret in a file
// only this user can read, in a directory of its own. Its path goes to the router and the shard leader
// (--shard-token-file); the secret itself is on no command line, which `ps` shows to everyone.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface RunToken {
  /** The flag that names the file, for each child's command line. */
  args: string[];
  /** Deletes the file and its directory, once the children are gone. */
  remove(): void;
}

export function makeRunToken(): RunToken {
  const dir = mkdtempSync(join(tmpdir(), "loraserve-"));
  const file = join(dir, "shard-token");
  writeFileSync(file, randomBytes(32).toString("base64url"), { mode: 0o600 });
  return { args: ["--shard-token-file", file], remove: () => rmSync(dir, { recursive: true, force: true }) };
}

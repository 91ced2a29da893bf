// What an adapter's files look like on disk, cheaply: each file's size, modification time and inode, from one
// stat each. The registry keeps the stamp taken before the files were read and compares it with a new one when a
// request names the adapter: a file replaced, rewritten or re-linked (a Hugging Face snapshot's symlink moved to
// another blob) gives another stamp, and the adapter is read again.
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from "../model/adapter.js";

// The files whose content the served adapter depends on: its config and weights, and its chat template.
const STAMPED_FILES = [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, "tokenizer_config.json", "chat_template.jinja"];

/** One string for the state of `dir`'s adapter files; a missing or unreadable file stamps as such. */
export async function stampAdapterFiles(dir: string): Promise<string> {
  const stamps = await Promise.all(
    STAMPED_FILES.map((file) =>
      fs.stat(join(dir, file), { bigint: true }).then(
        (stat) => `${stat.size}:${stat.mtimeNs}:${stat.ino}`,
        (error: NodeJS.ErrnoException) => error.code ?? "error",
      ),
    ),
  );
  return stamps.join("/");
}

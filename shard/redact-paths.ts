// What the shard's public answers (Generate, Tokenize, GetAdapter: anyone the router serves) may say about its
// files: no absolute path. An adapter root becomes "<adapter root N>" (N counts --adapter-root as given, which
// the operator can read back), any other absolute path "<path>"; what follows a root (the adapter's own files)
// stays, so a user still learns which file of which adapter was wrong. Loads and unloads, the admin's calls,
// keep their paths.

/** An absolute POSIX path not inside a word or after a root named above: "acme/tone" (an id) is left alone. */
const ABSOLUTE_PATH = /(?<![\w.~>-])\/[^\s"'`,;()<>]+/g;

export type RedactPaths = (message: string) => string;

export function pathRedactor(rootDirs: readonly string[]): RedactPaths {
  // Longest first: a root inside another root is named as itself.
  const roots = rootDirs.map((dir, i) => ({ dir, name: `<adapter root ${i + 1}>` })).sort((a, b) => b.dir.length - a.dir.length);
  return (message) => {
    let redacted = message;
    for (const { dir, name } of roots) redacted = redacted.replaceAll(dir, name);
    return redacted.replace(ABSOLUTE_PATH, "<path>");
  };
}

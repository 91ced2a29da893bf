// The adapter roots (`--adapter-root`): where an adapter id that nobody registered is looked up, as ROOT/ID/ or
// in the Hugging Face cache layout ROOT/models--ORG--NAME/snapshots/REV/. Ids and paths come from users, so
// every name is checked before the file system sees it, and every path is checked by path-containment.ts
// before any file under it is opened.
import { promises as fs, realpathSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { AdapterError } from "./errors.js";
import { realpathInside } from "./path-containment.js";

/** An adapter directory found inside a root: both are real paths (no symlinks left). */
export interface FoundAdapter {
  dir: string;
  root: string;
}

/** Longest id or path accepted; a name past this is no adapter's. */
const MAX_NAME_LENGTH = 512;
/** What a Hugging Face cache revision (refs/main) may hold: a commit hash or a branch-like name. */
const REVISION = /^[A-Za-z0-9._-]+$/;

/**
 * The segments of a relative name: refused when empty, absolute, with empty, "." or ".." segments, a NUL or a
 * backslash (Windows separators would mean something else to whoever wrote them).
 */
export function nameSegments(what: string, name: string): string[] {
  const refuse = (why: string): never => {
    throw new AdapterError("invalid", `${what} ${JSON.stringify(name)} ${why}`);
  };
  if (name === "") refuse("is empty");
  if (name.length > MAX_NAME_LENGTH) refuse(`is longer than ${MAX_NAME_LENGTH} characters`);
  if (name.includes("\0")) refuse("contains a NUL character");
  if (name.includes("\\")) refuse("contains a backslash");
  if (name.startsWith("/")) refuse("is an absolute path; adapter paths are relative to an adapter root");
  const segments = name.split("/");
  if (segments.some((s) => s === "")) refuse("has an empty path segment");
  if (segments.some((s) => s === "." || s === "..")) refuse('has a "." or ".." segment');
  return segments;
}

export class AdapterRoots {
  /** Real paths of the roots, in search order. */
  readonly dirs: readonly string[];

  /** Resolves every root once at start-up; a root that is missing or not a directory is a usage error. */
  constructor(dirs: readonly string[]) {
    this.dirs = dirs.map((dir) => {
      let real: string;
      try {
        real = realpathSync(resolve(dir));
      } catch (error) {
        throw new Error(`--adapter-root ${dir}: ${(error as Error).message}`, { cause: error });
      }
      if (!statSync(real).isDirectory()) throw new Error(`--adapter-root ${dir} is not a directory`);
      return real;
    });
  }

  /** The directory of adapter `id` in the first root that holds it, or null when none does. */
  async find(id: string): Promise<FoundAdapter | null> {
    const segments = nameSegments("adapter id", id);
    for (const root of this.dirs) {
      const direct = await this.directoryInside(root, join(root, ...segments), id);
      if (direct) return { dir: direct, root };
      const cached = await this.cachedSnapshot(root, segments, id);
      if (cached) return { dir: cached, root };
    }
    return null;
  }

  /** A directory named relative to the roots (LoadAdapter's `path`), in the first root that holds it. */
  async findPath(path: string): Promise<FoundAdapter> {
    const segments = nameSegments("path", path);
    for (const root of this.dirs) {
      const dir = await this.directoryInside(root, join(root, ...segments), path);
      if (dir) return { dir, root };
    }
    throw new AdapterError("not_found", `path ${JSON.stringify(path)} is in none of the adapter roots`);
  }

  /**
   * The real path of `path` when it is a directory; null when nothing is there. Throws when it resolves outside
   * `root`: a name that leads out is refused even if another root could have answered it.
   */
  private async directoryInside(root: string, path: string, name: string): Promise<string | null> {
    const real = await realpathInside(path, root, JSON.stringify(name));
    if (real === null) return null;
    return (await fs.stat(real)).isDirectory() ? real : null;
  }

  /** ROOT/models--ORG--NAME/snapshots/REV for id ORG/NAME: the revision refs/main names, else the newest snapshot. */
  private async cachedSnapshot(root: string, segments: string[], id: string): Promise<string | null> {
    const repo = await this.directoryInside(root, join(root, `models--${segments.join("--")}`), id);
    if (!repo) return null;
    const revision = (await this.mainRevision(root, repo, id)) ?? (await this.newestSnapshot(root, repo, id));
    return revision === null ? null : this.directoryInside(root, join(repo, "snapshots", revision), id);
  }

  private async mainRevision(root: string, repo: string, id: string): Promise<string | null> {
    const ref = await realpathInside(join(repo, "refs", "main"), root, JSON.stringify(id));
    if (ref === null) return null;
    const revision = (await fs.readFile(ref, "utf8")).trim();
    if (!REVISION.test(revision) || revision === "." || revision === "..") {
      throw new AdapterError("invalid", `${join(repo, "refs", "main")} does not hold a revision name`);
    }
    return revision;
  }

  private async newestSnapshot(root: string, repo: string, id: string): Promise<string | null> {
    const snapshots = await this.directoryInside(root, join(repo, "snapshots"), id);
    if (!snapshots) return null;
    let newest: { name: string; mtimeMs: number } | null = null;
    for (const name of (await fs.readdir(snapshots)).sort()) {
      const stat = await fs.stat(join(snapshots, name)).catch(() => null);
      if (stat?.isDirectory() && (newest === null || stat.mtimeMs > newest.mtimeMs)) newest = { name, mtimeMs: stat.mtimeMs };
    }
    return newest?.name ?? null;
  }
}
